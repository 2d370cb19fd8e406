"""Evaluation for CIFAR-10.

The original tutorial published ~86% precision @ 1 on the 10,000 test images
after 100K steps of cifar10_train.py (4 hours on a Tesla K40m); this port's
own measurements are in the README's Results.

Usage (the data set is downloaded to --data_dir first if it is not there):

  python cifar10_eval.py --checkpoint_dir=/tmp/cifar10_train --eval_dir=/tmp/cifar10_eval

It runs beside the trainer: every --eval_interval_secs it looks for a new
checkpoint in --checkpoint_dir and scores it once with the moving averages of
the weights, writing 'Precision @ 1', each class's precision and the
confusion matrix to --eval_dir for TensorBoard. A damaged checkpoint is
said and passed over (with --run_once the newest one that restores is
scored); no checkpoint is scored twice.
"""

import io
import math
import os
import time
from datetime import datetime

import numpy as np
from PIL import Image, ImageDraw, ImageFont

import cifar10
import cifar10_input
from cifar10_input import tf

FLAGS = tf.app.flags.FLAGS

tf.app.flags.DEFINE_string('eval_dir', '/tmp/cifar10_eval',
                           """Directory where to write event logs.""")
tf.app.flags.DEFINE_enum('eval_data', 'test', ['test', 'train_eval'],
                         """Either 'test' or 'train_eval'.""")
tf.app.flags.DEFINE_string('checkpoint_dir', '/tmp/cifar10_train',
                           """Directory where to read model checkpoints.""")
tf.app.flags.DEFINE_integer('eval_interval_secs', 60 * 5,
                            """How often to look for a new checkpoint.""",
                            lower_bound=0)
tf.app.flags.DEFINE_integer('num_examples', 10000,
                            """Number of examples to run.""",
                            lower_bound=1)
tf.app.flags.DEFINE_boolean('run_once', False,
                            """Whether to run eval only once.""")
tf.app.flags.DEFINE_integer('timeout', None,
                            """Stop after this many seconds without a new
                            checkpoint (default: poll forever).""",
                            lower_bound=0)

# Summary tags, beside 'Precision @ 1' and 'Precision @ 1/<class>'.
CONFUSION_IMAGE_TAG = 'Confusion matrix'
CONFUSION_TABLE_TAG = 'Confusion matrix (table)'
# The confusion-matrix image: sizes in pixels, colours in RGB.
CELL_PIXELS = 40
MARGIN_PIXELS = 6
FONT_PIXELS = 12
FULL_CELL_COLOUR = (31, 119, 180)  # A cell that holds all of its row.
GRID_COLOUR = (160, 160, 160)
DARK_TEXT_COLOUR = (0, 0, 0)
LIGHT_TEXT_COLOUR = (255, 255, 255)


def checkpoint_step(checkpoint_path):
    """Reads the global step from a checkpoint path like .../model.ckpt-1000.

    Args:
      checkpoint_path: the checkpoint's path prefix.

    Returns:
      The global step, an int.
    """
    return int(checkpoint_path.rsplit('-', 1)[-1])


def build_eval_graph(eval_data):
    """Builds the evaluation model and a saver that loads averaged weights.

    Args:
      eval_data: bool, the test file if True, else the training files.

    Returns:
      eval_ops: dict of Tensors with one entry per example of a batch:
        'in_top_k' (bool, whether its top prediction is right), 'labels'
        (its true class), 'predictions' (its top class) and 'logits'.
      saver: a Saver that restores the moving averages of the weights (the
        shadow variables) into the model's variables.
    """
    # Get images and labels for CIFAR-10.
    images, labels = cifar10.inputs(eval_data=eval_data)

    # Build a Graph that computes the logits predictions from the
    # inference model.
    logits = cifar10.inference(images)

    # Calculate predictions (in_top_k takes float32 only: --use_fp16 logits
    # are cast).
    top_k_op = tf.nn.in_top_k(predictions=tf.cast(logits, tf.float32),
                              targets=labels, k=1)
    eval_ops = {'in_top_k': top_k_op, 'labels': labels,
                'predictions': tf.argmax(logits, axis=1), 'logits': logits}

    # Restore the moving average version of the learned variables for eval.
    saver = cifar10.averaged_weights_saver()
    return eval_ops, saver


def eval_once(saver, summary_writer, eval_ops, summary_op, checkpoint_path,
              num_examples, class_names):
    """Run Eval once.

    Writes 'Precision @ 1', each class's precision and the confusion matrix
    (add_class_summaries) at the checkpoint's global step; with --run_once,
    also prints them as a table (class_table) after the precision line.

    Args:
      saver: Saver.
      summary_writer: Summary writer.
      eval_ops: the dict of Tensors build_eval_graph returns; 'in_top_k',
        'labels' and 'predictions' are used.
      summary_op: Summary op.
      checkpoint_path: the checkpoint to evaluate.
      num_examples: how many examples to score; each record is read once.
      class_names: the NUM_CLASSES class names, label 0's first.

    Returns:
      The precision, or None if the checkpoint is damaged or was deleted
      while being read (a line says which).

    Raises:
      UserError: if the checkpoint does not fit this model, or the summary
        cannot be written.
    """
    global_step = checkpoint_step(checkpoint_path)
    with tf.Session(config=cifar10.session_config()) as sess:
        damage = cifar10.restore_checkpoint(
            sess, saver, cifar10.averaged_variables(), checkpoint_path,
            'cannot evaluate %s, it does not fit this model (%s): point --checkpoint_dir at '
            'this model\'s checkpoints, with --use_fp16 if it was trained with it')
        if damage is not None and checkpoint_path not in _listed_checkpoints(
                os.path.dirname(checkpoint_path)):
            print('%s: %s was deleted while being read (the trainer keeps only '
                  'the newest); moving on to the newest.'
                  % (datetime.now(), checkpoint_path), flush=True)
            return None
        if damage is not None:
            print('%s: %s is damaged (%s); it is not scored.'
                  % (datetime.now(), checkpoint_path, damage), flush=True)
            return None
        sess.run(tf.local_variables_initializer())

        # Start the queue runners.
        coord = tf.train.Coordinator()
        threads = tf.train.start_queue_runners(sess=sess, coord=coord)
        true_count = 0  # Counts the number of correct predictions.
        total_count = 0
        batches = []  # (in_top_k, labels, predictions) of the counted examples.
        summary = None
        fetches = [eval_ops['in_top_k'], eval_ops['labels'], eval_ops['predictions']]
        try:
            num_iter = int(math.ceil(num_examples / FLAGS.batch_size))
            for _ in range(num_iter):
                if summary is None:
                    batch, summary = sess.run([fetches, summary_op])
                else:
                    batch = sess.run(fetches)
                # The last batch may hold more than is left to count.
                batch = [values[:num_examples - total_count] for values in batch]
                true_count += int(np.sum(batch[0]))
                total_count += len(batch[0])
                batches.append(batch)
        except tf.errors.OutOfRangeError:
            pass  # Every record has been read once.
        finally:
            coord.request_stop()
            coord.join(threads, stop_grace_period_secs=10)

    # Compute precision @ 1.
    precision = true_count / total_count
    print('%s: precision @ 1 = %.3f' % (datetime.now(), precision), flush=True)
    in_top_k, labels, predictions = (np.concatenate(values)
                                     for values in zip(*batches, strict=True))
    confusion, correct = count_by_class(in_top_k, labels, predictions, len(class_names))
    if FLAGS.run_once:
        print(plain_table(class_table(class_names, confusion, correct)), flush=True)

    summary_proto = tf.Summary()
    summary_proto.ParseFromString(summary)
    summary_proto.value.add(tag='Precision @ 1', simple_value=precision)
    add_class_summaries(summary_proto, class_names, confusion, correct)
    try:
        summary_writer.add_summary(summary_proto, global_step)
        summary_writer.flush()
    except (tf.errors.OpError, OSError) as e:
        raise cifar10.write_error(FLAGS.eval_dir, e, 'the earlier evaluations in it are '
                                  'intact: make room and run again') from e
    return precision


_said_state_damage = set()  # The folders whose damaged state file was named.


def _listed_checkpoints(checkpoint_dir):
    """The checkpoints in checkpoint_dir, oldest first, found by their files
    (cifar10.list_checkpoints); a damaged state file is named once."""
    paths, state_damage = cifar10.list_checkpoints(checkpoint_dir)
    if state_damage and checkpoint_dir not in _said_state_damage:
        _said_state_damage.add(checkpoint_dir)
        print('%s: %s is damaged (%s): passing over it, to the checkpoint files.'
              % (datetime.now(), os.path.join(checkpoint_dir, cifar10.STATE_FILENAME),
                 state_damage), flush=True)
    return paths


def count_by_class(in_top_k, labels, predictions, num_classes):
    """Counts the scored examples by class.

    Args:
      in_top_k: bool array, whether each example's top prediction is right.
      labels: int array, each example's true class.
      predictions: int array, each example's top class.
      num_classes: the number of classes.

    Returns:
      confusion: [num_classes, num_classes] int array, the examples of each
        true class (row) with each top class (column).
      correct: [num_classes] int array, the examples of each true class that
        in_top_k counts as right.
    """
    pairs = np.asarray(labels, np.int64) * num_classes + predictions
    confusion = np.bincount(pairs, minlength=num_classes ** 2).reshape(num_classes, -1)
    correct = np.bincount(labels, weights=in_top_k, minlength=num_classes).astype(np.int64)
    return confusion, correct


def class_table(class_names, confusion, correct):
    """The confusion matrix and each class's precision @ 1, as table rows.

    Args:
      class_names: the class names, label 0's first.
      confusion: the confusion matrix from count_by_class.
      correct: the right examples of each class, from count_by_class.

    Returns:
      A list of rows, each a list of strings; the first row is the header.
      A row per true class: its examples of each top class, its examples,
      and the fraction right ('-' without examples).
    """
    rows = [['true \\ predicted'] + list(class_names) + ['examples', 'precision @ 1']]
    for name, counts, right in zip(class_names, confusion, correct, strict=True):
        examples = int(counts.sum())
        precision = '%.3f' % (right / examples) if examples else '-'
        rows.append([name] + [str(count) for count in counts] + [str(examples), precision])
    return rows


def plain_table(rows):
    """Lays table rows out as aligned text: names left, numbers right.

    Args:
      rows: a list of rows, each a list of strings.

    Returns:
      The table, one line a row, without a final newline.
    """
    widths = [max(len(cell) for cell in column) for column in zip(*rows, strict=True)]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        lines.append('  '.join(cells))
    return '\n'.join(lines)


def markdown_table(rows):
    """Writes table rows as a Markdown table, which TensorBoard shows as one.

    Args:
      rows: a list of rows, each a list of strings; the first is the header.

    Returns:
      The table as a string.
    """
    lines = ['| %s |' % ' | '.join(row) for row in rows]
    lines.insert(1, '|---|%s' % ('---:|' * (len(rows[0]) - 1)))
    return '\n'.join(lines)


def _text_mask(text, font):
    """Rasterizes text: a [height, width] float array, 1 where the ink is."""
    left, top, right, bottom = font.getbbox(text)
    image = Image.new('L', (max(right - left, 1), max(bottom - top, 1)))
    ImageDraw.Draw(image).text((-left, -top), text, fill=255, font=font)
    return np.asarray(image) / 255.0


def _draw_text(canvas, mask, top, left, colour):
    """Draws a text mask in colour onto canvas, its top-left corner at (top, left)."""
    region = canvas[top:top + mask.shape[0], left:left + mask.shape[1]]
    ink = mask[:region.shape[0], :region.shape[1], None]
    region[:] = region * (1 - ink) + np.asarray(colour) * ink


def confusion_matrix_image(class_names, confusion):
    """Draws the confusion matrix for TensorBoard.

    Rows are the true classes, columns the predicted ones, both labelled with
    the class names; each cell shows its count and is shaded from white to
    FULL_CELL_COLOUR by its share of its row. numpy lays it out; Pillow
    (which TensorBoard needs anyway) only rasterizes the text.

    Args:
      class_names: the class names, label 0's first.
      confusion: the [n, n] confusion matrix from count_by_class.

    Returns:
      A [height, width, 3] uint8 RGB array.
    """
    font = ImageFont.load_default(size=FONT_PIXELS)
    names = [_text_mask(name, font) for name in class_names]
    x_title, y_title = _text_mask('predicted class', font), _text_mask('true class', font)
    name_pixels = max(mask.shape[1] for mask in names) + 2 * MARGIN_PIXELS
    origin = x_title.shape[0] + 2 * MARGIN_PIXELS + name_pixels  # Top and left margins.
    side = len(class_names) * CELL_PIXELS
    canvas = np.full([origin + side + MARGIN_PIXELS] * 2 + [3], 255.0)

    examples = confusion.sum(axis=1, keepdims=True)
    share = (confusion / np.maximum(examples, 1))[:, :, None]
    cells = 255 - share * (255 - np.asarray(FULL_CELL_COLOUR, np.float64))
    cells = np.repeat(np.repeat(cells, CELL_PIXELS, axis=0), CELL_PIXELS, axis=1)
    canvas[origin:origin + side, origin:origin + side] = cells
    for line in range(origin, origin + side + 1, CELL_PIXELS):
        canvas[line, origin:origin + side + 1] = GRID_COLOUR
        canvas[origin:origin + side + 1, line] = GRID_COLOUR

    middle = origin + side // 2
    _draw_text(canvas, x_title, MARGIN_PIXELS, middle - x_title.shape[1] // 2,
               DARK_TEXT_COLOUR)
    y_title = np.rot90(y_title)
    _draw_text(canvas, y_title, middle - y_title.shape[0] // 2, MARGIN_PIXELS,
               DARK_TEXT_COLOUR)
    for i, name in enumerate(names):
        centre = origin + i * CELL_PIXELS + CELL_PIXELS // 2
        # Row labels right-aligned left of the cells; column labels read upwards.
        _draw_text(canvas, name, centre - name.shape[0] // 2,
                   origin - MARGIN_PIXELS - name.shape[1], DARK_TEXT_COLOUR)
        column_name = np.rot90(name)
        _draw_text(canvas, column_name, origin - MARGIN_PIXELS - column_name.shape[0],
                   centre - column_name.shape[1] // 2, DARK_TEXT_COLOUR)
    for (row, column), count in np.ndenumerate(confusion):
        digits = _text_mask(str(count), font)
        colour = LIGHT_TEXT_COLOUR if share[row, column, 0] > 0.5 else DARK_TEXT_COLOUR
        _draw_text(canvas, digits,
                   origin + row * CELL_PIXELS + (CELL_PIXELS - digits.shape[0]) // 2,
                   origin + column * CELL_PIXELS + (CELL_PIXELS - digits.shape[1]) // 2,
                   colour)
    return np.round(canvas).astype(np.uint8)


def add_class_summaries(summary_proto, class_names, confusion, correct):
    """Adds each class's precision and the confusion matrix to a Summary.

    'Precision @ 1/<class>' is the fraction of that class's examples whose top
    prediction is right (a class without examples gets none); the confusion
    matrix goes in as an image (CONFUSION_IMAGE_TAG) and as a text table
    (CONFUSION_TABLE_TAG).

    Args:
      summary_proto: the tf.Summary to add to.
      class_names: the class names, label 0's first.
      confusion: the confusion matrix from count_by_class.
      correct: the right examples of each class, from count_by_class.
    """
    for name, counts, right in zip(class_names, confusion, correct, strict=True):
        if counts.sum():
            summary_proto.value.add(tag='Precision @ 1/%s' % name,
                                    simple_value=right / counts.sum())
    image = confusion_matrix_image(class_names, confusion)
    png = io.BytesIO()
    Image.fromarray(image).save(png, format='PNG')
    summary_proto.value.add(tag=CONFUSION_IMAGE_TAG, image=tf.Summary.Image(
        height=image.shape[0], width=image.shape[1], colorspace=3,
        encoded_image_string=png.getvalue()))
    table = tf.make_tensor_proto(markdown_table(class_table(class_names, confusion, correct)))
    value = summary_proto.value.add(tag=CONFUSION_TABLE_TAG, tensor=table)
    value.metadata.plugin_data.plugin_name = 'text'


def evaluate():
    """Eval CIFAR-10 for a number of steps, once per new checkpoint.

    Raises:
      UserError: if a data file is bad, with --run_once if no checkpoint
        restores, or if a checkpoint does not fit this model.
    """
    eval_data = FLAGS.eval_data == 'test'
    filenames = cifar10_input.data_filenames(
        eval_data, os.path.join(FLAGS.data_dir, cifar10.DATA_SUBDIR))
    num_records = cifar10_input.check_data_files(filenames)
    num_examples = min(FLAGS.num_examples, num_records)
    if num_records < FLAGS.num_examples:
        print('The %s data holds %d records, fewer than --num_examples=%d: '
              'each record is scored once.'
              % (FLAGS.eval_data, num_records, FLAGS.num_examples), flush=True)

    with tf.Graph().as_default() as g:
        eval_ops, saver = build_eval_graph(eval_data)
        class_names = cifar10.class_names()

        # Build the summary operation based on the TF collection of Summaries.
        summary_op = tf.summary.merge_all()
        try:
            summary_writer = cifar10.SummaryWriter(FLAGS.eval_dir, g)
        except (tf.errors.OpError, OSError) as e:
            raise cifar10.write_error(FLAGS.eval_dir, e, 'make room and run again') from e

        def score(checkpoint_path):
            return eval_once(saver, summary_writer, eval_ops, summary_op, checkpoint_path,
                             num_examples, class_names)

        try:
            if FLAGS.run_once:
                _evaluate_newest_whole_checkpoint(score)
            else:
                _evaluate_each_new_checkpoint(score)
        finally:
            summary_writer.close()


def _evaluate_newest_whole_checkpoint(score):
    """Scores the newest checkpoint that restores, passing over damaged ones."""
    paths = _listed_checkpoints(FLAGS.checkpoint_dir)
    if not paths:
        raise cifar10.UserError('No checkpoint file found in %s' % FLAGS.checkpoint_dir)
    for checkpoint_path in reversed(paths):
        if score(checkpoint_path) is not None:
            return
    raise cifar10.UserError('no checkpoint in %s restores: all %d are damaged or gone'
                            % (FLAGS.checkpoint_dir, len(paths)))


def _evaluate_each_new_checkpoint(score):
    """Polls --checkpoint_dir and scores each new checkpoint once, until
    --timeout seconds pass without a new one (counted from the end of the
    last evaluation, so a slow evaluation does not eat the timeout)."""
    last_evaluated = None
    said_waiting = False
    idle_since = time.time()
    while True:
        # A checkpoint without its index may be one the trainer is writing.
        listed = [path for path in _listed_checkpoints(FLAGS.checkpoint_dir)
                  if tf.gfile.Exists(path + '.index')]
        checkpoint_path = listed[-1] if listed else None
        if checkpoint_path is None and not said_waiting:
            said_waiting = True
            print('No checkpoint file found in %s yet: waiting for the '
                  'trainer.' % FLAGS.checkpoint_dir, flush=True)
        if checkpoint_path is not None and checkpoint_path != last_evaluated:
            last_evaluated = checkpoint_path
            precision = score(checkpoint_path)
            idle_since = time.time()
            if (precision is None
                    and checkpoint_path not in _listed_checkpoints(FLAGS.checkpoint_dir)):
                continue  # Deleted under us: look again for the newest.
        waited = time.time() - idle_since
        if FLAGS.timeout is not None and waited >= FLAGS.timeout:
            print('No new checkpoint in %s for %d seconds: stopping.'
                  % (FLAGS.checkpoint_dir, FLAGS.timeout), flush=True)
            return
        sleep_secs = FLAGS.eval_interval_secs
        if FLAGS.timeout is not None:
            sleep_secs = min(sleep_secs, FLAGS.timeout - waited)
        time.sleep(sleep_secs)


def main(argv=None):  # pylint: disable=unused-argument
    cifar10.maybe_download_and_extract()
    evaluate()


def run():
    """Console-script entry point: parses the flags and evaluates."""
    cifar10.run(main)


if __name__ == '__main__':
    run()

"""What the scripts show in TensorBoard: event files written at once, and the evaluator's
per-class precision and confusion matrix. A library; the trainers and evaluator use it.
"""

import contextlib
import io
import os
import socket
import time

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cifar10_support.runtime import tf

# Summary tags, beside 'Precision @ 1' and 'Precision @ 1/<class>'.
CONFUSION_IMAGE_TAG = 'Confusion matrix'
CONFUSION_TABLE_TAG = 'Confusion matrix (table)'
# The confusion-matrix image: sizes in pixels, colours in RGB.
CELL_PIXELS, MARGIN_PIXELS, FONT_PIXELS = 40, 6, 12
FULL_CELL_COLOUR = (31, 119, 180)  # A cell that holds all of its row.
GRID_COLOUR = (160, 160, 160)
DARK_TEXT_COLOUR, LIGHT_TEXT_COLOUR = (0, 0, 0), (255, 255, 255)


class SummaryWriter:
    """Writes event files as tf.summary.FileWriter does, but each event at once (FileWriter
    writes from a thread and silently drops what a full disk refuses, leaving a cut-off
    event); a failed write cuts the file back to its last whole event, closes it, raises."""

    def __init__(self, logdir, graph=None):
        """Opens a new event file in logdir (created if needed; a path, or a URL such as
        gs://...) with graph in it, if given; raises tf.errors.OpError or OSError if not."""
        tf.gfile.MakeDirs(logdir)
        self.path = os.path.join(logdir, 'events.out.tfevents.%010d.%s.%d' % (
            time.time(), socket.gethostname(), os.getpid()))
        self._writer = tf.io.TFRecordWriter(self.path)
        self._whole_bytes = 0  # The file's size after its last whole event.
        self._add_event(tf.Event(file_version='brain.Event:2'))
        if graph is not None:
            self._add_event(tf.Event(graph_def=graph.as_graph_def().SerializeToString()))

    def _add_event(self, event):
        """Writes event and flushes it, or cuts the file back, closes and raises."""
        if self._writer is None:
            raise ValueError('the event file %s is closed' % self.path)
        event.wall_time = time.time()
        try:
            self._writer.write(event.SerializeToString())
            self._writer.flush()
        except (tf.errors.OpError, OSError):
            writer, self._writer = self._writer, None
            with contextlib.suppress(tf.errors.OpError, OSError):
                writer.close()
            if '://' not in self.path:
                os.truncate(self.path, self._whole_bytes)
            raise
        if '://' not in self.path:
            self._whole_bytes = os.path.getsize(self.path)

    def add_summary(self, summary, global_step):
        """Writes summary, a tf.Summary or its serialized bytes, at global_step. Raises
        tf.errors.OpError or OSError if the write fails, with the writer closed."""
        if isinstance(summary, bytes):
            summary = tf.Summary.FromString(summary)
        self._add_event(tf.Event(step=int(global_step), summary=summary))

    def close(self):
        """Closes the event file."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def count_by_class(in_top_k, labels, predictions, num_classes):
    """Counts the scored examples by class, from arrays of whether each one's top
    prediction is right (in_top_k, bool), its true class and its top class (int).
    Returns the [num_classes, num_classes] int confusion matrix (rows the true classes,
    columns the top ones) and each true class's examples in_top_k counts right."""
    pairs = np.asarray(labels, np.int64) * num_classes + predictions
    confusion = np.bincount(pairs, minlength=num_classes ** 2).reshape(num_classes, -1)
    correct = np.bincount(labels, weights=in_top_k, minlength=num_classes).astype(np.int64)
    return confusion, correct


def class_table(class_names, confusion, correct):
    """The table rows (lists of strings, header first) of count_by_class's confusion matrix
    and each class's precision @ 1 ('-' without examples); class_names from label 0."""
    rows = [['true \\ predicted'] + list(class_names) + ['examples', 'precision @ 1']]
    for name, counts, right in zip(class_names, confusion, correct, strict=True):
        examples = int(counts.sum())
        precision = '%.3f' % (right / examples) if examples else '-'
        rows.append([name] + [str(count) for count in counts] + [str(examples), precision])
    return rows


def plain_table(rows):
    """Table rows as aligned lines of text, names left and numbers right, no final newline."""
    widths = [max(len(cell) for cell in column) for column in zip(*rows, strict=True)]
    return '\n'.join('  '.join([row[0].ljust(widths[0])] + [
        cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)])
        for row in rows)


def markdown_table(rows):
    """Writes table rows as a Markdown table, which TensorBoard shows as one."""
    lines = ['| %s |' % ' | '.join(row) for row in rows]
    lines.insert(1, '|---|%s' % ('---:|' * (len(rows[0]) - 1)))
    return '\n'.join(lines)


def _text_mask(text, font):
    """Rasterizes text: a [height, width] float array, 1 where the ink is."""
    left, top, right, bottom = font.getbbox(text)
    image = Image.new('L', (max(right - left, 1), max(bottom - top, 1)))
    ImageDraw.Draw(image).text((-left, -top), text, fill=255, font=font)
    return np.asarray(image) / 255.0


def _draw_text(canvas, mask, top, left, colour=DARK_TEXT_COLOUR):
    """Draws a text mask in colour onto canvas, its top-left corner at (top, left)."""
    region = canvas[top:top + mask.shape[0], left:left + mask.shape[1]]
    ink = mask[:region.shape[0], :region.shape[1], None]
    region[:] = region * (1 - ink) + np.asarray(colour) * ink


def confusion_matrix_image(class_names, confusion):
    """Draws count_by_class's confusion matrix as a [height, width, 3] uint8 RGB array:
    rows the true classes, columns the predicted ones, labelled with class_names; each
    cell shows its count, shaded from white to FULL_CELL_COLOUR by its share of its row.
    numpy lays it out; Pillow (which TensorBoard needs anyway) rasterizes the text."""
    font = ImageFont.load_default(size=FONT_PIXELS)
    names = [_text_mask(name, font) for name in class_names]
    x_title, y_title = _text_mask('predicted class', font), _text_mask('true class', font)
    name_pixels = max(mask.shape[1] for mask in names) + 2 * MARGIN_PIXELS
    origin = x_title.shape[0] + 2 * MARGIN_PIXELS + name_pixels  # Top and left margins.
    side = len(class_names) * CELL_PIXELS
    canvas = np.full([origin + side + MARGIN_PIXELS] * 2 + [3], 255.0)

    share = (confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1))[:, :, None]
    cells = 255 - share * (255 - np.asarray(FULL_CELL_COLOUR, np.float64))
    cells = np.repeat(np.repeat(cells, CELL_PIXELS, axis=0), CELL_PIXELS, axis=1)
    canvas[origin:origin + side, origin:origin + side] = cells
    for line in range(origin, origin + side + 1, CELL_PIXELS):
        canvas[line, origin:origin + side + 1] = GRID_COLOUR
        canvas[origin:origin + side + 1, line] = GRID_COLOUR

    middle = origin + side // 2
    _draw_text(canvas, x_title, MARGIN_PIXELS, middle - x_title.shape[1] // 2)
    y_title = np.rot90(y_title)
    _draw_text(canvas, y_title, middle - y_title.shape[0] // 2, MARGIN_PIXELS)
    for i, name in enumerate(names):
        centre = origin + i * CELL_PIXELS + CELL_PIXELS // 2
        # Row labels right-aligned left of the cells; column labels read upwards.
        _draw_text(canvas, name, centre - name.shape[0] // 2,
                   origin - MARGIN_PIXELS - name.shape[1])
        column_name = np.rot90(name)
        _draw_text(canvas, column_name, origin - MARGIN_PIXELS - column_name.shape[0],
                   centre - column_name.shape[1] // 2)
    for (row, column), count in np.ndenumerate(confusion):
        digits = _text_mask(str(count), font)
        colour = LIGHT_TEXT_COLOUR if share[row, column, 0] > 0.5 else DARK_TEXT_COLOUR
        _draw_text(canvas, digits,
                   origin + row * CELL_PIXELS + (CELL_PIXELS - digits.shape[0]) // 2,
                   origin + column * CELL_PIXELS + (CELL_PIXELS - digits.shape[1]) // 2, colour)
    return np.round(canvas).astype(np.uint8)


def add_class_summaries(summary_proto, class_names, confusion, correct):
    """Adds to summary_proto, a tf.Summary, each class's 'Precision @ 1/<class>' (none for
    a class without examples) and count_by_class's confusion matrix as an image
    (CONFUSION_IMAGE_TAG) and a text table (CONFUSION_TABLE_TAG)."""
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

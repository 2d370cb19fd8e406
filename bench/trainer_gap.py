"""How close cifar10_train.py comes to its compute-only ceiling, measured in
turns so that the machine's drift cannot decide it.

  python bench/trainer_gap.py [--data_dir=/tmp/cifar10_bench] [--steps=2000]
      [--turn_secs=2] [--mixed_precision=none|bf16|fp16] [--json=out.json]
      [--candidate=trainer|loop_ceiling|ceiling] [--baseline_repo=PATH]
      [cifar10_train.py flags,
      such as --input_pipeline=dataset]

The ceiling (train_throughput.py's: the training step on one constant
in-memory batch, no input pipeline, no summaries) and the trainer as a user
runs it (queue runners, summaries every 100 steps, hooks, log lines) are
started side by side, then take turns on the cores: one runs for
--turn_secs while the other is stopped (SIGSTOP), then the other. A shared
VM's speed drifts for stretches of seconds (15% on the machines here), which
makes two rows measured one after the other disagree by more than the gap
in question; in turns of 2 seconds both see the same drift.

Each process logs the end time of every step (the trainer with
--log_frequency=1, its own log lines). A step counts when it both started
and ended within one of its process's turns, after --warmup_steps; the
steps the turns' edges cut are left out, at random with respect to the
summary steps, which therefore count at their share (one in 100). The
rates are examples over the counted steps' time; the ratio trainer /
ceiling is printed with and without the trainer's summary steps (and the
step after each, in whose time the trainer writes the event), and the
quartiles of the ratio over pairs of neighbouring turns show its spread.
It ends when either process has run --steps steps.

--baseline_repo=PATH sets another copy of the project's trainer (an older
commit's, checked out in PATH) in the ceiling's place, with the same flags:
the ratio is then this trainer's speed over that one's, before and after a
change, in one run.

--candidate=loop_ceiling sets the ceiling's step run by the trainer's loop
(cifar10_train.train_loop: its hooks, a log line every step, the summaries)
against the ceiling, which splits the gap into the loop's part and the
input pipeline's; --candidate=ceiling sets the ceiling against itself, which
shows what the turns alone make of two equal processes.
"""

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime

import common
from train_throughput import SUMMARY_STEPS, build_ceiling_step

TRAINER_LINE_STEP = ': step '
# What --candidate sets against the ceiling, as the table names it.
CANDIDATES = {'trainer': 'cifar10_train.py', 'loop_ceiling': "ceiling in the trainer's loop",
              'ceiling': 'the ceiling again'}


def run_ceiling(batch_size, steps, mixed_precision):
    """The --measure=ceiling child: prints 'step <i> <end time>' per step."""
    sys.path.insert(0, common.REPO_ROOT)
    import cifar10
    from cifar10 import tf
    with tf.Graph().as_default():
        train_op, loss = build_ceiling_step(batch_size, mixed_precision)
        with tf.Session(config=cifar10.session_config()) as sess:
            sess.run([tf.global_variables_initializer(), tf.local_variables_initializer()])
            for step in range(steps):
                sess.run([train_op, loss])
                print('step %d %.6f' % (step, time.time()), flush=True)


def run_ceiling_in_loop(batch_size, steps, mixed_precision, train_dir):
    """The --measure=loop_ceiling child: the ceiling's step run by
    cifar10_train.train_loop (hooks, log line every step, summaries), so
    without the input pipeline only."""
    sys.path.insert(0, common.REPO_ROOT)
    import cifar10_train
    from cifar10 import tf
    with tf.Graph().as_default():
        train_op, loss = build_ceiling_step(batch_size, mixed_precision)
        cifar10_train.FLAGS(['loop_ceiling', '--train_dir=%s' % train_dir,
                             '--max_steps=%d' % steps, '--log_frequency=1',
                             '--save_checkpoint_steps=%d' % (10 * steps)])
        cifar10_train.train_loop(train_op, loss, tf.train.get_or_create_global_step())


def step_times(lines, trainer):
    """(step, end time) of each step line a child printed."""
    times = []
    for line in lines:
        if trainer and TRAINER_LINE_STEP in line:
            stamp, rest = line.split(TRAINER_LINE_STEP, 1)
            step = int(rest.split(',', 1)[0])
            times.append((step, datetime.fromisoformat(stamp).timestamp()))
        elif line.startswith('step '):
            _, step, end = line.split()
            times.append((int(step), float(end)))
    return times


def counted_steps(times, turns, warmup_steps):
    """The steps that started and ended within one turn, after warm-up.

    Args:
      times: (step, end time) per step, in order.
      turns: (start, end) of this process's turns.
      warmup_steps: steps left out at the start.

    Returns:
      A list of (step, seconds, turn index).
    """
    counted = []
    for (_, previous_end), (step, end) in zip(times, times[1:], strict=False):
        if step < warmup_steps:
            continue
        for index, (turn_start, turn_end) in enumerate(turns):
            if turn_start <= previous_end and end <= turn_end:
                counted.append((step, end - previous_end, index))
                break
    return counted


def rate(steps, batch_size, leave_out_summary_steps=False):
    """examples/sec over the counted steps; optionally without the summary
    steps and the step after each (the trainer writes the event file after
    the summary step's log line, so in the next step's time)."""
    seconds = [secs for step, secs, _ in steps
               if not (leave_out_summary_steps and step % SUMMARY_STEPS in (0, 1))]
    return len(seconds) * batch_size / sum(seconds) if seconds else None


class Child:
    """A child process whose stdout lines are collected by a thread."""

    def __init__(self, command):
        self._stderr = tempfile.TemporaryFile('w+')
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE,
                                        stderr=self._stderr, text=True,
                                        cwd=common.REPO_ROOT)
        self.lines = []
        self.stepped = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line.rstrip('\n'))
            if 'step ' in line:
                self.stepped.set()
        self.stepped.set()

    def signal(self, signum):
        """Sends signum if the child still runs."""
        if self.process.poll() is None:
            self.process.send_signal(signum)

    def finish(self):
        """Lets the child go on, ends it, and returns its stderr."""
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGKILL)
        self.process.wait()
        self._reader.join()
        self._stderr.seek(0)
        return self._stderr.read()


def take_turns(children, turn_secs, deadline_secs):
    """Runs the children one at a time, turn_secs each, until one exits.

    Returns:
      One list of (start, end) turns per child.
    """
    for child in children:  # Each stops once it has made its first step.
        if not child.stepped.wait(deadline_secs):
            raise RuntimeError('a child made no step in %d s' % deadline_secs)
        child.signal(signal.SIGSTOP)
    turns = [[] for _ in children]
    while all(child.process.poll() is None for child in children):
        for index, child in enumerate(children):
            start = time.time()
            child.signal(signal.SIGCONT)
            time.sleep(turn_secs)
            child.signal(signal.SIGSTOP)
            turns[index].append((start, time.time()))
            if child.process.poll() is not None:
                break
    return turns


def child_command(args, measure):
    """The command of a --measure child of this script."""
    return [sys.executable, os.path.abspath(__file__), '--measure=%s' % measure,
            '--batch_size=%d' % args.batch_size, '--steps=%d' % args.steps,
            '--mixed_precision=%s' % args.mixed_precision]


def candidate_command(args, train_dir, trainer_flags, repo=common.REPO_ROOT):
    """The command of what --candidate sets against the ceiling (the
    trainer: that of the project in repo)."""
    if args.candidate != 'trainer':
        return child_command(args, args.candidate)
    return [sys.executable, os.path.join(repo, 'cifar10_train.py'),
            '--data_dir=%s' % args.data_dir,
            '--train_dir=%s' % train_dir, '--batch_size=%d' % args.batch_size,
            '--max_steps=%d' % args.steps, '--log_frequency=1',
            '--save_checkpoint_steps=%d' % (10 * args.steps),
            '--mixed_precision=%s' % args.mixed_precision] + trainer_flags


def main():
    """Parses the flags, runs the ceiling and the trainer in turns, prints the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--data_dir', default='/tmp/cifar10_bench')
    parser.add_argument('--batch_size', type=int, default=common.BATCH_SIZE)
    parser.add_argument('--steps', type=int, default=2000,
                        help='steps each may run; it ends when one has')
    parser.add_argument('--warmup_steps', type=int, default=50)
    parser.add_argument('--turn_secs', type=float, default=2.0)
    parser.add_argument('--mixed_precision', default='none',
                        choices=['none', 'bf16', 'fp16'])
    parser.add_argument('--json', default=None, help='also write the results here')
    parser.add_argument('--measure', choices=['ceiling', 'loop_ceiling'],
                        help=argparse.SUPPRESS)
    parser.add_argument('--candidate', choices=['trainer', 'loop_ceiling', 'ceiling'],
                        default='trainer',
                        help='what to set against the ceiling: cifar10_train.py; the '
                        "ceiling's step in the trainer's loop (hooks, log lines and "
                        'summaries, no input pipeline); or the ceiling itself, to see '
                        'what the turns alone make of two equal processes')
    parser.add_argument('--baseline_repo', default=None,
                        help="set the trainer of the project in this folder (another "
                        "commit's) in the ceiling's place")
    args, trainer_flags = parser.parse_known_args()
    if args.measure == 'ceiling':
        run_ceiling(args.batch_size, args.steps, args.mixed_precision)
        return
    if args.measure == 'loop_ceiling':
        with tempfile.TemporaryDirectory() as train_dir:
            run_ceiling_in_loop(args.batch_size, args.steps, args.mixed_precision, train_dir)
        return

    common.ensure_data(args.data_dir)
    with tempfile.TemporaryDirectory() as train_dir, \
            tempfile.TemporaryDirectory() as baseline_dir:
        if args.baseline_repo:
            ceiling = Child(candidate_command(args, baseline_dir, trainer_flags,
                                              os.path.abspath(args.baseline_repo)))
        else:
            ceiling = Child(child_command(args, 'ceiling'))
        trainer = Child(candidate_command(args, train_dir, trainer_flags))
        children = [ceiling, trainer]
        try:
            turns = take_turns(children, args.turn_secs, deadline_secs=600)
        finally:
            errors = [child.finish() for child in children]
    loop_lines = args.candidate != 'ceiling'  # The trainer's loop logs the steps.
    steps = [counted_steps(step_times(child.lines, trainer=loop_lines and (
        child is trainer or bool(args.baseline_repo))),
                           child_turns,
                           args.warmup_steps)
             for child, child_turns in zip(children, turns, strict=True)]
    if not all(steps):
        raise RuntimeError('no steps counted; stderr: %s' % errors)
    ceiling_steps, trainer_steps = steps
    ceiling_rate = rate(ceiling_steps, args.batch_size)
    trainer_rate = rate(trainer_steps, args.batch_size)
    without_summaries = rate(trainer_steps, args.batch_size, leave_out_summary_steps=True)
    # The ratio per pair of neighbouring turns (trainer turn i follows ceiling turn i).
    pairs = []
    for index in range(len(turns[1])):
        ceiling_turn = [s for s in ceiling_steps if s[2] == index]
        trainer_turn = [s for s in trainer_steps if s[2] == index]
        if ceiling_turn and trainer_turn:
            pairs.append(rate(trainer_turn, 1) / rate(ceiling_turn, 1))
    quartiles = statistics.quantiles(pairs, n=4) if len(pairs) > 1 else []
    summary_steps = sum(1 for step, _, _ in trainer_steps if step % SUMMARY_STEPS == 0)
    reference = ('cifar10_train.py of %s' % args.baseline_repo if args.baseline_repo
                 else 'ceiling (constant batch, compute only)')
    result = {
        'candidate': args.candidate, 'baseline_repo': args.baseline_repo,
        'batch_size': args.batch_size, 'mixed_precision': args.mixed_precision,
        'trainer_flags': trainer_flags, 'turn_secs': args.turn_secs, 'turns': len(pairs),
        'ceiling_steps': len(ceiling_steps), 'trainer_steps': len(trainer_steps),
        'trainer_summary_steps': summary_steps,
        'ceiling_examples_per_sec': ceiling_rate, 'trainer_examples_per_sec': trainer_rate,
        'trainer_without_summary_steps': without_summaries,
        'trainer_vs_ceiling': trainer_rate / ceiling_rate,
        'trainer_without_summary_steps_vs_ceiling': without_summaries / ceiling_rate,
        'pair_ratio_quartiles': quartiles,
        'ceiling_median_step_secs': statistics.median(secs for _, secs, _ in ceiling_steps),
        'trainer_median_step_secs': statistics.median(secs for _, secs, _ in trainer_steps),
        'trainer_counted_steps': [[step, secs] for step, secs, _ in trainer_steps],
        'ceiling_counted_steps': [[step, secs] for step, secs, _ in ceiling_steps],
    }
    common.print_table(
        'Trainer vs ceiling in %d turns of %.1f s each, batch %d, --mixed_precision=%s'
        % (len(pairs), args.turn_secs, args.batch_size, args.mixed_precision),
        ['', 'steps counted', 'examples/sec', 'x ceiling'],
        [[reference, str(len(ceiling_steps)),
          '%.0f' % ceiling_rate, '1.000'],
         ['%s (%d summary steps)' % (CANDIDATES[args.candidate], summary_steps),
          str(len(trainer_steps)),
          '%.0f' % trainer_rate, '%.3f' % result['trainer_vs_ceiling']],
         ['%s without the summary steps' % CANDIDATES[args.candidate],
          '', '%.0f' % without_summaries,
          '%.3f' % result['trainer_without_summary_steps_vs_ceiling']]])
    if quartiles:
        print('Candidate / ceiling per pair of neighbouring turns: quartiles %s'
              % ', '.join('%.3f' % q for q in quartiles))
    if args.json:
        common.write_json(args.json, result)


if __name__ == '__main__':
    main()

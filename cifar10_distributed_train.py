"""A binary to train CIFAR-10 on several machines, with parameter servers
and workers on TensorFlow's own distributed runtime.

Between-graph replication, as TensorFlow 1 did it: the parameter servers
(job "ps") hold the variables, under the single-device trainer's names; each
worker (job "worker") reads its own copy of the data with its own
queue-runner input pipeline, runs the towers of cifar10_multi_gpu_train.py
on its devices (--num_gpus, --device_type; by default one tower, on the GPU
if there is one) and sends their averaged gradient to the parameter servers.
With --sync_replicas (the default) a tf.train.SyncReplicasOptimizer averages
one gradient per worker per step and applies it once, then updates the
moving averages of the weights; with --sync_replicas=false each worker's
gradient is applied as it comes. Worker 0, the chief, restores or
initializes the model and writes the summaries and checkpoints into its own
--train_dir; cifar10_eval.py scores them unchanged, and any trainer resumes
any other's checkpoints.

Usage, one command per machine (here one parameter server, two workers):

  python cifar10_distributed_train.py --job_name=ps --task_index=0 \\
      --ps_hosts=ps0:2222 --worker_hosts=worker0:2222,worker1:2222
  python cifar10_distributed_train.py --job_name=worker --task_index=0 \\
      --ps_hosts=ps0:2222 --worker_hosts=worker0:2222,worker1:2222
  python cifar10_distributed_train.py --job_name=worker --task_index=1 \\
      --ps_hosts=ps0:2222 --worker_hosts=worker0:2222,worker1:2222

or, instead of the four cluster flags, the TF_CONFIG environment variable:

  TF_CONFIG='{"cluster": {"ps": ["ps0:2222"], "worker": ["worker0:2222",
  "worker1:2222"]}, "task": {"type": "worker", "index": 1}}'

To try it on one machine, --local_cluster=2 starts a parameter server and
two workers on free 127.0.0.1 ports, each line of their output prefixed by
its task.

Every flag of cifar10_train.py applies (to each worker). Parameter servers
exit by themselves once every worker is done. A task that stays out of
contact for --task_timeout_secs stops the others with one line naming it.
TensorFlow's servers have no authentication and no encryption: run the
cluster only on a private network (README, Security).
"""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import cifar10
import cifar10_multi_gpu_train
import cifar10_train
from cifar10_input import tf

FLAGS = tf.app.flags.FLAGS

tf.app.flags.DEFINE_enum('job_name', None, ['ps', 'worker'],
                         """This task's job: a parameter server or a worker.""")
tf.app.flags.DEFINE_integer('task_index', None,
                            """This task's index in its job's hosts (worker 0
                            is the chief).""", lower_bound=0)
tf.app.flags.DEFINE_list('ps_hosts', [],
                         """The parameter servers, comma-separated host:port.""")
tf.app.flags.DEFINE_list('worker_hosts', [],
                         """The workers, comma-separated host:port.""")
tf.app.flags.DEFINE_boolean('sync_replicas', True,
                            """Average one gradient per worker per step
                            (SyncReplicasOptimizer); false applies each
                            worker's gradient as it comes.""")
tf.app.flags.DEFINE_integer('replicas_to_aggregate', None,
                            """Gradients averaged per step in synchronous
                            mode; default the number of workers.""", lower_bound=1)
tf.app.flags.DEFINE_integer('task_timeout_secs', 60,
                            """Seconds a task may stay out of contact before
                            the tasks that need it stop.""", lower_bound=1)
tf.app.flags.DEFINE_integer('local_cluster', 0,
                            """Start one parameter server and this many
                            workers on this machine (127.0.0.1).""", lower_bound=0)

CLUSTER_FLAGS = ('job_name', 'task_index', 'ps_hosts', 'worker_hosts')
JOBS = ('ps', 'worker')
# Seconds between looks at whether the tasks we need still answer (at most;
# less with a short --task_timeout_secs).
PROBE_INTERVAL_SECS = 2.0
# The least time a look may take: a task busy starting can be slow to answer.
PROBE_TIMEOUT_SECS = 5.0
# A worker whose training takes no step for this many times
# --task_timeout_secs while every task answers stops: the cluster is stuck.
STUCK_TIMEOUTS = 5
# Seconds a worker that ends gives a parameter server to take its "done".
DONE_TIMEOUT_SECS = 10
DONE_QUEUE_NAME = 'done_queue'
# The variable in each task's server that holds what it was told of the cluster.
VIEW_VARIABLE = 'cluster_view'
# Seconds --local_cluster waits, once the workers are done, for its
# parameter server to stop; and, after a Ctrl-C or SIGTERM, for the workers
# past --task_timeout_secs; then it kills what is left.
LOCAL_CLUSTER_STOP_SECS = 10


def _given(name):
    """Whether the flag was given (on the command line, or set by a test)."""
    return not FLAGS[name].using_default_value


def _parse_hosts(hosts, source):
    """Checks a list of 'host:port' addresses; source names where they came from."""
    if not hosts:
        raise cifar10.UserError('%s names no hosts: give one or more host:port' % source)
    for address in hosts:
        host, _, port = str(address).rpartition(':')
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise cifar10.UserError('%s: %r is not host:port (a port from 1 to 65535)'
                                    % (source, address))
    return [str(address) for address in hosts]


def _cluster_from_tf_config(text):
    """The cluster and task that TF_CONFIG describes; a "chief" job becomes worker 0."""
    try:
        config = json.loads(text)
        cluster, task = config['cluster'], config['task']
        task_type, task_index = task['type'], task['index']
    except (ValueError, TypeError, KeyError) as e:
        raise cifar10.UserError(
            'TF_CONFIG is not of the form {"cluster": {"ps": [...], "worker": [...]}, '
            '"task": {"type": "worker", "index": 0}} (%s: %s)' % (type(e).__name__, e)) from e
    if not isinstance(cluster, dict) or not isinstance(task_index, int):
        raise cifar10.UserError('TF_CONFIG: "cluster" must map jobs to lists of host:port, '
                                'and the task\'s "index" must be a number')
    unknown = sorted(set(cluster) - {'chief', 'ps', 'worker'})
    if unknown:
        raise cifar10.UserError(
            'TF_CONFIG names the job %r, which this trainer does not run: its jobs are chief, '
            'worker and ps (to evaluate, run cifar10_eval.py on the chief\'s --train_dir)'
            % unknown[0])
    if not all(isinstance(hosts, list) for hosts in cluster.values()):
        raise cifar10.UserError('TF_CONFIG: each job of "cluster" must have a list of '
                                'host:port')
    chief = cluster.get('chief', [])
    if len(chief) > 1:
        raise cifar10.UserError('TF_CONFIG names %d chiefs: there can be one' % len(chief))
    hosts = {'ps': _parse_hosts(cluster.get('ps'), 'TF_CONFIG\'s "ps"'),
             'worker': _parse_hosts(chief + cluster.get('worker', []),
                                    'TF_CONFIG\'s "chief" and "worker"')}
    if task_type == 'chief':
        if not chief or task_index != 0:
            raise cifar10.UserError('TF_CONFIG\'s task is chief %d, but its cluster has %d '
                                    'chief(s)' % (task_index, len(chief)))
        return hosts, 'worker', 0
    if task_type not in JOBS:
        raise cifar10.UserError('TF_CONFIG\'s task type is %r: it must be chief, worker or ps'
                                % task_type)
    if task_type == 'worker' and chief:
        task_index += 1  # Worker i of TF_CONFIG is worker i + 1 here.
    return hosts, task_type, task_index


def cluster_from_flags(tf_config=None):
    """The cluster and this process's task, from the flags or from TF_CONFIG.

    Args:
      tf_config: the TF_CONFIG environment variable's value, or None.

    Returns:
      (cluster, job_name, task_index): cluster maps 'ps' and 'worker' to
      their lists of 'host:port'; worker 0 is the chief.

    Raises:
      UserError: if the cluster is missing, given twice, incomplete or
        malformed, or this task or --replicas_to_aggregate do not fit it.
    """
    given = [name for name in CLUSTER_FLAGS if _given(name)]
    if tf_config and given:
        raise cifar10.UserError('the cluster is given twice, by TF_CONFIG and by --%s: give '
                                'either the four cluster flags or TF_CONFIG' % given[0])
    if tf_config:
        cluster, job_name, task_index = _cluster_from_tf_config(tf_config)
        source = 'TF_CONFIG'
    elif not given:
        raise cifar10.UserError(
            'no cluster: give --job_name, --task_index, --ps_hosts and --worker_hosts, or '
            'TF_CONFIG (README, Train on several machines); or try --local_cluster=2')
    else:
        missing = [name for name in CLUSTER_FLAGS if name not in given]
        if missing:
            raise cifar10.UserError('--%s %s missing: give all of --job_name, --task_index, '
                                    '--ps_hosts and --worker_hosts'
                                    % (', --'.join(missing), 'is' if len(missing) == 1 else 'are'))
        cluster = {'ps': _parse_hosts(FLAGS.ps_hosts, '--ps_hosts'),
                   'worker': _parse_hosts(FLAGS.worker_hosts, '--worker_hosts')}
        job_name, task_index = FLAGS.job_name, FLAGS.task_index
        source = '--task_index'
    addresses = cluster['ps'] + cluster['worker']
    for address in addresses:
        if addresses.count(address) > 1:
            raise cifar10.UserError('%s is named twice in the cluster: each task needs its own '
                                    'host:port' % address)
    if not 0 <= task_index < len(cluster[job_name]):
        raise cifar10.UserError('%s gives task %d of job %s, which has tasks 0 to %d'
                                % (source, task_index, job_name, len(cluster[job_name]) - 1))
    if _given('replicas_to_aggregate'):
        if not FLAGS.sync_replicas:
            raise cifar10.UserError('--replicas_to_aggregate applies to synchronous training: '
                                    'leave it out with --sync_replicas=false')
        if FLAGS.replicas_to_aggregate > len(cluster['worker']):
            raise cifar10.UserError('--replicas_to_aggregate=%d, but the cluster has %d '
                                    'worker(s): at most that many'
                                    % (FLAGS.replicas_to_aggregate, len(cluster['worker'])))
    return cluster, job_name, task_index


def task_name(job_name, task_index):
    """The task's device name, '/job:worker/task:1'."""
    return '/job:%s/task:%d' % (job_name, task_index)


def _start_server(cluster, job_name, task_index, config):
    """Starts this task's tf.train.Server, or says in one line why it cannot."""
    try:
        return tf.train.Server(tf.train.ClusterSpec(cluster), job_name=job_name,
                               task_index=task_index, config=config)
    except (tf.errors.OpError, ValueError) as e:
        raise cifar10.UserError('cannot start the server of %s at %s: %s (is the port in use?)'
                                % (task_name(job_name, task_index),
                                   cluster[job_name][task_index], cifar10.error_reason(e))) from e


def _on_task(job_name, task_index, address, timeout_secs, build):
    """Runs what build() makes, in a graph of its own, on that task alone (a
    session with its server), within timeout_secs.

    Returns:
      What the run fetched.

    Raises:
      tf.errors.OpError: if it did not run; DeadlineExceededError or
        UnavailableError if the task did not answer in time.
    """
    with tf.Graph().as_default() as graph, tf.device(task_name(job_name, task_index)):
        fetches = build()
    config = tf.ConfigProto(device_filters=[task_name(job_name, task_index)],
                            operation_timeout_in_ms=max(1, int(timeout_secs * 1000)))
    sess = tf.Session('grpc://' + address, graph=graph, config=config)
    try:
        return sess.run(fetches)
    finally:
        with contextlib.suppress(tf.errors.OpError):
            sess.close()


def _cluster_view(cluster):
    """What this task was told of the cluster, as JSON: the hosts of each
    job, and how the gradients are applied."""
    return json.dumps({'ps': cluster['ps'], 'worker': cluster['worker'],
                       'sync_replicas': FLAGS.sync_replicas,
                       'replicas_to_aggregate': (FLAGS.replicas_to_aggregate
                                                 or len(cluster['worker']))}, sort_keys=True)


def _describe_view(view):
    """A cluster view (from _cluster_view) in words."""
    view = json.loads(view)
    return 'ps %s, workers %s, %s' % (
        ' '.join(view['ps']), ' '.join(view['worker']),
        'synchronous of %d' % view['replicas_to_aggregate'] if view['sync_replicas']
        else 'asynchronous')


def _view_variable(value=''):
    """The variable, on the task of the current device scope, that holds
    that task's cluster view: the same variable in every graph."""
    return tf.Variable(value, name=VIEW_VARIABLE, trainable=False, collections=[],
                       use_resource=True)


def _publish_view(server, job_name, task_index, view):
    """Puts this task's cluster view in its own server, for the others to compare."""
    with tf.Graph().as_default() as graph, tf.device(task_name(job_name, task_index)):
        initializer = _view_variable(view).initializer
    config = tf.ConfigProto(device_filters=[task_name(job_name, task_index)])
    with tf.Session(server.target, graph=graph, config=config) as sess:
        sess.run(initializer)


def _task_view(job_name, task_index, address, timeout_secs):
    """That task's cluster view: None if it did not answer within
    timeout_secs, '' if it answered but has published none yet."""
    try:
        return _on_task(job_name, task_index, address, timeout_secs,
                        lambda: _view_variable().read_value()).decode()
    except tf.errors.FailedPreconditionError:
        return ''  # It answers; its server has no view yet.
    except tf.errors.OpError:
        return None


def _done_queue():
    """The queue on a parameter server into which each worker puts its
    index when it is done with the parameter servers: -1 - index if it
    ended with an error."""
    return tf.FIFOQueue(-1, tf.int32, shapes=[], shared_name=DONE_QUEUE_NAME,
                        name=DONE_QUEUE_NAME)


def _say_done(cluster, task_index, failed=False, skip=()):
    """Tells each parameter server (but those in skip) that this worker is
    done, and whether it failed, giving each DONE_TIMEOUT_SECS at most."""
    value = -1 - task_index if failed else task_index
    for ps_index, address in enumerate(cluster['ps']):
        if ('ps', ps_index) not in skip:
            with contextlib.suppress(tf.errors.OpError):
                _on_task('ps', ps_index, address,
                         min(DONE_TIMEOUT_SECS, FLAGS.task_timeout_secs),
                         lambda: _done_queue().enqueue(value))


def _watch(cluster, own_view, tasks, on_lost, on_other_cluster, on_stuck=None,
           last_progress=None):
    """Starts a thread that looks every PROBE_INTERVAL_SECS whether each task
    of tasks() answers, reading the cluster view it published.

    A task that stops answering is named at once, in one line, and again
    when it answers again; one that stays silent for --task_timeout_secs
    is given to on_lost(job_name, task_index) (tasks() must leave a lost
    task out). A task that has not answered yet is waited for, as
    TensorFlow waits; after --task_timeout_secs one line says so. A task
    started with another cluster is given to on_other_cluster(job_name,
    task_index, message) at each look; with last_progress, no training
    step for STUCK_TIMEOUTS times --task_timeout_secs while every task
    answered, to on_stuck(message).

    Args:
      cluster: from cluster_from_flags().
      own_view: this task's cluster view, from _cluster_view().
      tasks: a function giving the (job_name, task_index) to watch.
      on_lost: called with a task that stayed silent.
      on_other_cluster: called with a task started with another cluster
        and the one line that says so.
      on_stuck: called with the one line that says the cluster is stuck.
      last_progress: None, or a function giving the time.monotonic() of
        this worker's last training step, None before its first.

    Returns:
      A threading.Event: set it to end the watch.
    """
    stop = threading.Event()
    timeout_secs = FLAGS.task_timeout_secs
    interval = min(PROBE_INTERVAL_SECS, timeout_secs / 3)

    def watch():
        started = every_task_answers_since = time.monotonic()
        last_answer, quiet, waiting_said = {}, set(), set()
        while not stop.wait(interval):
            for task in tasks():
                name, address = task_name(*task), cluster[task[0]][task[1]]
                view = _task_view(*task, address, max(interval, PROBE_TIMEOUT_SECS))
                now = time.monotonic()
                if view is not None:
                    if view and view != own_view:
                        on_other_cluster(*task, '%s at %s was started with another cluster (%s) '
                                         'than this task (%s): start every task with the same '
                                         '--ps_hosts, --worker_hosts and --sync_replicas, or '
                                         'the same TF_CONFIG cluster'
                                         % (name, address, _describe_view(view),
                                            _describe_view(own_view)))
                    if task in quiet:
                        quiet.discard(task)
                        print('%s at %s answers again.' % (name, address), flush=True)
                    last_answer[task] = now
                    continue
                every_task_answers_since = now
                if task in last_answer:
                    if task not in quiet:
                        quiet.add(task)
                        print('%s at %s does not answer: waiting for it up to %d s '
                              '(--task_timeout_secs).' % (name, address, timeout_secs),
                              flush=True)
                    if now - last_answer[task] >= timeout_secs:
                        on_lost(*task)
                elif now - started >= timeout_secs and task not in waiting_said:
                    waiting_said.add(task)
                    print('Waiting for %s at %s to start.' % (name, address), flush=True)
                if stop.is_set():
                    return
            progress = last_progress() if last_progress else None
            if progress is not None and (time.monotonic() - max(progress, every_task_answers_since)
                                         >= STUCK_TIMEOUTS * timeout_secs):
                on_stuck('no training step for %d s (%d x --task_timeout_secs) although every '
                         'task answers: the cluster is stuck'
                         % (STUCK_TIMEOUTS * timeout_secs, STUCK_TIMEOUTS))

    threading.Thread(target=watch, name='watch_tasks', daemon=True).start()
    return stop


def _lost_message(cluster, job_name, task_index):
    """What a task says when it has lost contact with another."""
    return ('lost contact with %s at %s: no answer for %d s (--task_timeout_secs)'
            % (task_name(job_name, task_index), cluster[job_name][task_index],
               FLAGS.task_timeout_secs))


def _error_line(message):
    """Prints message as the scripts print an error: one line on stderr."""
    print(cifar10.error_line(message), file=sys.stderr, flush=True)


def _exit(status):
    """Ends the process at once, its output flushed: TensorFlow cannot shut
    a gRPC server down, and Python's own exit can abort in its destructor."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def run_parameter_server(cluster, task_index):
    """Serves the variables until every worker is done, or a signal comes.

    A worker that stops answering for --task_timeout_secs before it said it
    is done is reported in one line and no longer waited for. A worker
    started with another cluster is named in one line (it stops when it
    sees this parameter server's cluster), and waited for still.

    Args:
      cluster: from cluster_from_flags().
      task_index: this parameter server's index.

    Returns:
      The exit status: 0 once every worker is done, or on SIGTERM or
      Ctrl-C; 1 if a worker was lost, or ended with an error and was not
      started again.
    """
    server = _start_server(cluster, 'ps', task_index, cifar10.session_config())
    view = _cluster_view(cluster)
    _publish_view(server, 'ps', task_index, view)
    num_workers = len(cluster['worker'])
    done, failed, lost, finished = set(), set(), set(), threading.Event()
    other_cluster = set()

    def stop_on_signal(signum, unused_frame):
        print('Stopped by signal %d.' % signum, flush=True)
        finished.set()

    for signum in (signal.SIGINT, signal.SIGTERM):  # Before it says it serves.
        signal.signal(signum, stop_on_signal)
    print('Parameter server %s at %s: serving %d worker(s).'
          % (task_name('ps', task_index), cluster['ps'][task_index], num_workers), flush=True)

    def collect_done():
        with tf.Graph().as_default() as graph, tf.device(task_name('ps', task_index)):
            worker_done = _done_queue().dequeue()
        config = tf.ConfigProto(device_filters=[task_name('ps', task_index)])
        with tf.Session(server.target, graph=graph, config=config) as sess:
            while len(done | lost) < num_workers:
                value = int(sess.run(worker_done))
                if value < 0:  # Watched still: it may be started again.
                    failed.add(-1 - value)
                    print('%s ended with an error.' % task_name('worker', -1 - value),
                          flush=True)
                    continue
                failed.discard(value)
                done.add(value)
                if len(done | lost) == num_workers:
                    finished.set()

    def on_lost(job_name, worker_index):
        _error_line(_lost_message(cluster, job_name, worker_index) + ': no longer waiting for it')
        lost.add(worker_index)
        if len(done | lost) == num_workers:
            finished.set()

    def on_other_cluster(job_name, worker_index, message):
        if worker_index not in other_cluster:  # The worker stops when it sees it too.
            other_cluster.add(worker_index)
            print(message + '.', flush=True)

    def waited_for():
        return [('worker', i) for i in range(num_workers) if i not in done | lost]

    threading.Thread(target=collect_done, name='collect_done', daemon=True).start()
    _watch(cluster, view, waited_for, on_lost, on_other_cluster)
    finished.wait()
    if len(done | lost) == num_workers:
        if not lost and not failed:
            print('All %d worker(s) are done: stopping.' % num_workers, flush=True)
        _wait_until_gone(cluster, done)
    return 1 if lost or failed else 0


def _wait_until_gone(cluster, workers):
    """Waits (at most --task_timeout_secs) until these workers no longer
    answer: a worker closes its session with the parameter server after it
    said it is done, and would wait on the close if the server were gone."""
    deadline = time.monotonic() + FLAGS.task_timeout_secs
    for worker_index in workers:
        while (time.monotonic() < deadline
               and _task_view('worker', worker_index, cluster['worker'][worker_index],
                              PROBE_INTERVAL_SECS / 2) is not None):
            time.sleep(PROBE_INTERVAL_SECS / 10)


def _worker_devices(config):
    """The towers' devices: those --num_gpus and --device_type ask for, else
    one, the GPU if there is one (as cifar10_train.py places its model)."""
    if _given('num_gpus') or _given('device_type'):
        return cifar10_multi_gpu_train.tower_devices(config, FLAGS.num_gpus, FLAGS.device_type)
    try:
        return cifar10_multi_gpu_train.tower_devices(config, 1, 'gpu')
    except cifar10.UserError:
        return ['/cpu:0']


class _SyncReplicasHook(tf.train.SessionRunHook):
    """SyncReplicasOptimizer.make_session_run_hook(is_chief, num_tokens=0),
    except that the chief's thread that applies the averaged gradients is
    not left to the Coordinator, which would wait its grace period (120 s)
    for it at the end, while it waits for gradients that no longer come: the
    thread ends quietly when its session closes or fails.

    A worker that ends its training (at --max_steps, or after Ctrl-C or
    SIGTERM) closes the workers' token queue: a worker waiting for a step
    that will now never be averaged then ends its training there (the chief
    saving its checkpoint) instead of waiting for the lost worker. The
    tokens already in the queue are still handed out.

    And a chief that starts again while the parameter servers still hold
    the model (it was killed and restarted, or lost them for a moment)
    gives each other worker a token. A chief killed in the middle of a
    step leaves the per-variable gradient accumulators out of step: the
    dead chief's round took the other workers' gradients from some of them
    and never applied them, so the new round can never be complete, and
    the workers wait for a token that only a complete round would give.
    With a token, a waiting worker computes its gradient again, every
    accumulator gets enough, and the accumulators' step count drops the
    gradients that arrive late for a round already taken."""

    def __init__(self, sync_optimizer, is_chief, num_workers):
        self._sync_optimizer = sync_optimizer
        self._is_chief = is_chief
        self._num_workers = num_workers
        self._rejoins = False

    def begin(self):
        # The session manager has made sure of what this checks.
        self._sync_optimizer.ready_for_local_init_op.mark_used()
        self._close_tokens = self._sync_optimizer.get_chief_queue_runner().queue.close()
        if self._is_chief:
            self._local_init_op = self._sync_optimizer.chief_init_op
            self._init_tokens_op = self._sync_optimizer.get_init_tokens_op(num_tokens=0)
            runner = self._sync_optimizer.get_chief_queue_runner()
            global_step = tf.train.get_global_step()
            with tf.device(global_step.device):  # Where the token queue is.
                missing = tf.maximum(0, self._num_workers - 1 - runner.queue.size())
                self._hand_out_tokens = runner.queue.enqueue_many(
                    tf.fill(tf.reshape(missing, [1]), global_step))
            self._model_is_initialized = tf.equal(
                tf.size(tf.report_uninitialized_variables(tf.global_variables())), 0)
            # Its queue, the workers' tokens, is never closed by it.
            self._runner = tf.train.QueueRunner(
                runner.queue, runner.enqueue_ops, close_op=tf.no_op(), cancel_op=tf.no_op(),
                queue_closed_exception_types=(
                    tf.errors.OutOfRangeError, tf.errors.CancelledError,
                    tf.errors.AbortedError, tf.errors.UnavailableError))
        else:
            self._local_init_op = self._sync_optimizer.local_step_init_op

    def before_restore(self, session):
        """Notes whether the parameter servers still hold the model; the
        chief calls it in each new session, before restoring the model."""
        self._rejoins = bool(session.run(self._model_is_initialized))

    def after_create_session(self, session, coord):
        session.run(self._local_init_op)
        if self._is_chief:
            session.run(self._init_tokens_op)
            if self._rejoins:
                session.run(self._hand_out_tokens)
            self._runner.create_threads(session, daemon=True, start=True)

    def end(self, session):
        with contextlib.suppress(tf.errors.OpError):
            session.run(self._close_tokens)


class _ThenAverage:
    """The optimizer opt, whose apply_gradients also updates the weights'
    moving averages after its step.

    SyncReplicasOptimizer applies the averaged gradients with it, so that
    the workers, which wait for its tokens, go on once the weights and
    their averages are both updated (given variable_averages itself, it
    would update them after handing out the tokens)."""

    def __init__(self, opt, variable_averages):
        self._opt = opt
        self._variable_averages = variable_averages

    def apply_gradients(self, grads_and_vars, global_step=None, name=None):
        apply_op = self._opt.apply_gradients(grads_and_vars, global_step, name)
        with tf.control_dependencies([apply_op]):
            return self._variable_averages.apply(tf.trainable_variables())

    def __getattr__(self, name):
        return getattr(self._opt, name)


class _ProgressHook(tf.train.SessionRunHook):
    """Notes when the worker's session was created (an Event) and the
    time.monotonic() of its last training step."""

    def __init__(self):
        self.started = threading.Event()
        self.last_step_time = None

    def after_create_session(self, session, coord):
        self.last_step_time = time.monotonic()
        self.started.set()

    def after_run(self, run_context, run_values):
        self.last_step_time = time.monotonic()


def _stop_at_once_until(started, cluster, task_index):
    """Makes Ctrl-C and SIGTERM end the process at once (status 0, the
    parameter servers told) until started is set.

    Until its session is created, a worker waits for the cluster, often
    inside TensorFlow, where Python runs no signal handler; train_loop's
    own handling (stop after the step) takes over after that. A thread
    reads the signals from a wakeup fd, which Python writes to at once."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    signal.set_wakeup_fd(write_fd)

    def watch():
        while True:
            signum = os.read(read_fd, 1)[0]
            if signum in (signal.SIGINT, signal.SIGTERM) and not started.is_set():
                print('Stopped by signal %d before training.' % signum, flush=True)
                _say_done(cluster, task_index)
                _exit(0)

    threading.Thread(target=watch, name='stop_at_once', daemon=True).start()


def build_worker_graph(cluster, task_index, next_batch, devices):
    """Builds a worker's part of the cluster's graph: the variables on the
    parameter servers, under the single-device names; the towers on this
    worker; their averaged gradient applied synchronously (--sync_replicas)
    or as it comes.

    Args:
      cluster: from cluster_from_flags().
      task_index: this worker's index.
      next_batch: function returning (images, labels) for one tower; it is
        called under this worker's CPU.
      devices: one device name per tower, without job or task.

    Returns:
      train_op: runs one step; in synchronous mode it returns once the
        cluster has applied the step's averaged gradient.
      total_loss: the towers' mean total loss.
      summary_op: the summaries.
      global_step: the global step variable.
      hooks: the tf.train.SessionRunHooks the step needs.
    """
    num_workers = len(cluster['worker'])
    replicas = FLAGS.replicas_to_aggregate or num_workers
    sync_optimizers = []

    def synchronize(opt, variable_averages):
        sync_optimizers.append(tf.train.SyncReplicasOptimizer(
            _ThenAverage(opt, variable_averages), replicas_to_aggregate=replicas,
            total_num_replicas=num_workers))
        return sync_optimizers[-1]

    device_setter = tf.train.replica_device_setter(
        worker_device=task_name('worker', task_index), cluster=tf.train.ClusterSpec(cluster))
    with tf.device(device_setter), tf.device('/cpu:0'):
        global_step = tf.train.get_or_create_global_step()
        train_op, total_loss, summary_op = cifar10_multi_gpu_train.build_training(
            global_step, next_batch, devices,
            replicas_per_step=replicas if FLAGS.sync_replicas else 1,
            wrap_optimizer=synchronize if FLAGS.sync_replicas else None)
    hooks = ([_SyncReplicasHook(sync_optimizers[0], task_index == 0, num_workers)]
             if sync_optimizers else [])
    return train_op, total_loss, summary_op, global_step, hooks


def train_worker(server, cluster, task_index, devices, hooks=()):
    """Builds the worker's graph, with its input pipeline on its CPU, and
    trains with cifar10_train.train_loop.

    Args:
      server: this worker's tf.train.Server.
      cluster: from cluster_from_flags().
      task_index: this worker's index; 0 is the chief.
      devices: one device name per tower, from _worker_devices().
      hooks: further tf.train.SessionRunHooks.
    """
    worker_cpu = task_name('worker', task_index) + '/cpu:0'
    with tf.Graph().as_default():
        with tf.device(worker_cpu):
            images, labels = cifar10.distorted_inputs()
            batch_queue = cifar10_multi_gpu_train.prefetch_queue(
                [images, labels], capacity=2 * len(devices))
        train_op, total_loss, summary_op, global_step, sync_hooks = build_worker_graph(
            cluster, task_index, batch_queue.dequeue, devices)
        before_restore = sync_hooks[0].before_restore if sync_hooks and task_index == 0 else None
        config = cifar10.session_config(FLAGS.log_device_placement)
        config.device_filters.extend(['/job:ps', task_name('worker', task_index)])
        examples_per_step = len(devices) * FLAGS.batch_size
        if FLAGS.sync_replicas:
            examples_per_step *= FLAGS.replicas_to_aggregate or len(cluster['worker'])
        # The Saver is built here, so the chief writes its checkpoints itself.
        with tf.device(worker_cpu):
            cifar10_train.train_loop(
                train_op, total_loss, global_step, num_towers=len(devices),
                summary_op=summary_op, config=config, master=server.target,
                is_chief=task_index == 0, hooks=sync_hooks + list(hooks),
                before_restore=before_restore,
                cluster_examples_per_step=examples_per_step if task_index == 0 else None)


def run_worker(cluster, task_index):
    """Trains as worker task_index, telling the parameter servers when done.

    If a task it needs (the parameter servers; in synchronous mode also the
    other workers) stops answering for --task_timeout_secs, a parameter
    server was started with another cluster, or no training step comes for
    STUCK_TIMEOUTS times --task_timeout_secs while they all answer, it
    ends the process with
    one line saying so and exit status 1; the chief's checkpoints are left
    as they are. Ctrl-C or SIGTERM before its session exists ends it at
    once; after, once its step is done.

    Args:
      cluster: from cluster_from_flags().
      task_index: this worker's index; 0 is the chief.

    Raises:
      UserError: if the chief cannot claim its --train_dir, or training
        stops with an error.
    """
    num_cpu_devices = FLAGS.num_gpus if FLAGS.device_type == 'cpu' else 1
    server_config = cifar10.session_config(FLAGS.log_device_placement, num_cpu_devices)
    devices = _worker_devices(server_config)
    with (cifar10_train.claim_train_dir(FLAGS.train_dir) if task_index == 0
          else contextlib.nullcontext()):
        server = _start_server(cluster, 'worker', task_index, server_config)
        view = _cluster_view(cluster)
        _publish_view(server, 'worker', task_index, view)

        def needed():
            tasks = [('ps', i) for i in range(len(cluster['ps']))]
            if FLAGS.sync_replicas:
                tasks += [('worker', i) for i in range(len(cluster['worker']))
                          if i != task_index]
            return tasks

        def on_fatal(message, skip=()):
            if task_index == 0:
                latest = cifar10_train.newest_whole_checkpoint(FLAGS.train_dir)
                message += ('; the last checkpoint, %s, is intact' % latest if latest
                            else '; no checkpoint was written yet')
            _error_line(message)
            _say_done(cluster, task_index, failed=True, skip=skip)
            _exit(1)  # The main thread may wait on the lost task for ever.

        def on_lost(job_name, lost_index):
            on_fatal(_lost_message(cluster, job_name, lost_index) + ': stopping',
                     skip=[(job_name, lost_index)])

        def on_other_cluster(job_name, other_index, message):
            if job_name == 'ps':  # The parameter servers' cluster is the reference.
                on_fatal(message + ': stopping')

        progress = _ProgressHook()
        stop_watching = _watch(cluster, view, needed, on_lost, on_other_cluster,
                               lambda message: on_fatal(message + ': stopping'),
                               lambda: progress.last_step_time)
        _stop_at_once_until(progress.started, cluster, task_index)
        failed = True
        try:
            # After the server starts, so that the others see this task
            # answer while it downloads.
            cifar10.maybe_download_and_extract()
            train_worker(server, cluster, task_index, devices, [progress])
            failed = False
        finally:
            stop_watching.set()
            _say_done(cluster, task_index, failed=failed)


def _free_ports(count):
    """count TCP ports of 127.0.0.1 that are free now."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for each in sockets:
            each.bind(('127.0.0.1', 0))
        return [each.getsockname()[1] for each in sockets]
    finally:
        for each in sockets:
            each.close()


def _relay(stream, prefix, out):
    """Copies each line of stream to out, prefixed."""
    for line in stream:
        out.write(prefix + line)
        out.flush()


def run_local_cluster(num_workers):
    """Runs one parameter server and num_workers workers as child processes
    on free 127.0.0.1 ports, with this process's other flags, each line of
    their output prefixed by '[ps0] ', '[worker1] '...

    The first Ctrl-C or SIGTERM is passed on to the workers (the chief
    saves a checkpoint), and to the parameter server if it has not stopped
    by itself after them; what still runs after that is killed, and so is
    every task at a second signal.

    Args:
      num_workers: how many workers.

    Returns:
      The exit status: 0 if every task exited with 0, else 1.
    """
    cifar10.maybe_download_and_extract()  # Once, before the workers start.
    ports = _free_ports(num_workers + 1)
    hosts = ['--ps_hosts=127.0.0.1:%d' % ports[0],
             '--worker_hosts=' + ','.join('127.0.0.1:%d' % port for port in ports[1:])]
    passed_on = {FLAGS[name].serialize() for name in FLAGS
                 if _given(name) and name not in CLUSTER_FLAGS + ('local_cluster',)}
    env = {name: value for name, value in os.environ.items() if name != 'TF_CONFIG'}
    tasks, relays = {}, []
    for job_name, task_index in [('ps', 0)] + [('worker', i) for i in range(num_workers)]:
        name = '%s%d' % (job_name, task_index)
        tasks[name] = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), *sorted(passed_on), *hosts,
             '--job_name=%s' % job_name, '--task_index=%d' % task_index],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
            start_new_session=True)  # Ctrl-C reaches this process only.
        for stream, out in ((tasks[name].stdout, sys.stdout), (tasks[name].stderr, sys.stderr)):
            relays.append(threading.Thread(target=_relay, args=(stream, '[%s] ' % name, out),
                                           daemon=True))
            relays[-1].start()
    workers = [proc for name, proc in tasks.items() if name.startswith('worker')]
    stop_requested = threading.Event()

    def pass_on(signum, unused_frame):
        if stop_requested.is_set():
            raise KeyboardInterrupt  # A second signal kills every task at once.
        stop_requested.set()
        for proc in workers:
            proc.send_signal(signal.SIGTERM)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, pass_on)
    try:
        _wait_for(workers, stop_requested, FLAGS.task_timeout_secs + LOCAL_CLUSTER_STOP_SECS)
        # The parameter server stops by itself once the workers are done.
        _wait_for([tasks['ps0']], None, LOCAL_CLUSTER_STOP_SECS)
        if tasks['ps0'].poll() is None:
            tasks['ps0'].send_signal(signal.SIGTERM)
            _wait_for([tasks['ps0']], None, LOCAL_CLUSTER_STOP_SECS)
    finally:
        for proc in tasks.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        for relay in relays:
            relay.join(timeout=LOCAL_CLUSTER_STOP_SECS)  # The last lines.
    failed = ['%s (status %d)' % (name, proc.returncode) for name, proc in tasks.items()
              if proc.returncode != 0]
    if failed:
        _error_line('%s failed' % ', '.join(failed))
    return 1 if failed else 0


def _wait_for(procs, stop_requested, stop_secs):
    """Waits until every process in procs has exited; once stop_requested is
    set (None: at once), at most stop_secs more."""
    deadline = None if stop_requested is not None else time.monotonic() + stop_secs
    for proc in procs:
        while proc.poll() is None:
            if deadline is None and stop_requested.is_set():
                deadline = time.monotonic() + stop_secs
            if deadline is not None and time.monotonic() >= deadline:
                return
            try:
                proc.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass


def main(argv=None):  # pylint: disable=unused-argument
    tf_config = os.environ.get('TF_CONFIG')
    if FLAGS.local_cluster:
        given = [name for name in CLUSTER_FLAGS if _given(name)]
        if given or tf_config:
            raise cifar10.UserError(
                '--local_cluster starts a cluster of its own: leave out %s'
                % ('--' + given[0] if given else 'TF_CONFIG'))
        sys.exit(run_local_cluster(FLAGS.local_cluster))
    cluster, job_name, task_index = cluster_from_flags(tf_config)
    if job_name == 'ps':
        _exit(run_parameter_server(cluster, task_index))
    try:
        run_worker(cluster, task_index)
    except (cifar10.UserError, FloatingPointError) as e:
        _error_line(str(e))
        _exit(1)
    _exit(0)


def run():
    """Console-script entry point: parses the flags and runs this task."""
    cifar10.run(main, cifar10_train, cifar10_multi_gpu_train)


if __name__ == '__main__':
    run()

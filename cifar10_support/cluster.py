"""Parameter servers and workers on TensorFlow's gRPC runtime that watch
each other: each task names at once a task that goes quiet, and stops with
one line when one stays lost or was started with another cluster, or the
cluster is stuck (docs/DISTRIBUTED.md). A library; run
`cifar10_distributed_train.py` to train on a cluster.
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

from cifar10_support.runtime import UserError, error_line, error_reason, tf

JOBS = ('ps', 'worker')
PROBE_INTERVAL_SECS = 2.0  # Between looks at the tasks we need (less with a short timeout).
PROBE_TIMEOUT_SECS = 5.0  # The least time a look may take: a starting task is slow to answer.
STUCK_TIMEOUTS = 5  # Task timeouts with no step, every task answering: the cluster is stuck.
DONE_TIMEOUT_SECS = 10  # Given a parameter server to take a worker's "done".
DONE_QUEUE_NAME = 'done_queue'
VIEW_VARIABLE = 'cluster_view'  # In each task's server: the cluster it was told.
# Seconds the local cluster waits, once its workers are done, for its
# parameter server, and after a signal for the workers; then it kills.
LOCAL_CLUSTER_STOP_SECS = 10


def parse_hosts(hosts, source):
    """The hosts as strings; UserError, naming source, if none or one is not host:port."""
    if not hosts:
        raise UserError('%s names no hosts: give one or more host:port' % source)
    for address in hosts:
        host, _, port = str(address).rpartition(':')
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise UserError('%s: %r is not host:port (a port from 1 to 65535)' % (source, address))
    return [str(address) for address in hosts]


def cluster_from_tf_config():
    """(cluster, job_name, task_index) from TF_CONFIG, its chief as worker 0;
    cluster maps 'ps' and 'worker' to lists of 'host:port'. UserError if
    TF_CONFIG is malformed or names a job this trainer does not run."""
    form = ('TF_CONFIG is not of the form {"cluster": {"ps": [...], "worker": [...]}, '
            '"task": {"type": "worker", "index": 0}}')
    try:
        resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
        cluster = resolver.cluster_spec().as_dict()
        task_type, task_index = resolver.task_type, resolver.task_id
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise UserError('%s (%s: %s)' % (form, type(e).__name__, e)) from e
    if task_type is None or not isinstance(task_index, int):
        raise UserError('%s (its task has no type and index)' % form)
    unknown = sorted(set(cluster) - {'chief', 'ps', 'worker'})
    if unknown:
        raise UserError("TF_CONFIG names the job %r, which this trainer does not run: its jobs "
                        "are chief, worker and ps (to evaluate, run cifar10_eval.py on the "
                        "chief's --train_dir)" % unknown[0])
    chief = cluster.get('chief', [])
    if len(chief) > 1:
        raise UserError('TF_CONFIG names %d chiefs: there can be one' % len(chief))
    hosts = {'ps': parse_hosts(cluster.get('ps'), 'TF_CONFIG\'s "ps"'),
             'worker': parse_hosts(chief + cluster.get('worker', []),
                                   'TF_CONFIG\'s "chief" and "worker"')}
    if task_type == 'chief':
        if not chief or task_index != 0:
            raise UserError("TF_CONFIG's task is chief %d, but its cluster has %d chief(s)"
                            % (task_index, len(chief)))
        return hosts, 'worker', 0
    if task_type not in JOBS:
        raise UserError("TF_CONFIG's task type is %r: it must be chief, worker or ps" % task_type)
    if task_type == 'worker' and chief:
        task_index += 1  # Worker i of TF_CONFIG is worker i + 1 here.
    return hosts, task_type, task_index


def task_name(job_name, task_index):
    """The task's device name, '/job:worker/task:1'."""
    return '/job:%s/task:%d' % (job_name, task_index)


def _task_at(cluster, job_name, task_index):
    """The task in messages: '/job:worker/task:1 at host:port'."""
    return '%s at %s' % (task_name(job_name, task_index), cluster[job_name][task_index])


def start_server(cluster, job_name, task_index, config):
    """Starts and returns this task's tf.train.Server; UserError if it cannot."""
    try:
        return tf.train.Server(tf.train.ClusterSpec(cluster), job_name=job_name,
                               task_index=task_index, config=config)
    except (tf.errors.OpError, ValueError) as e:
        raise UserError('cannot start the server of %s: %s (is the port in use?)'
                        % (_task_at(cluster, job_name, task_index), error_reason(e))) from e


def _task_graph(job_name, task_index, build):
    """(graph, fetches, config): what build() makes, in a graph of its own on
    that task, and a session config that sees that task alone."""
    with tf.Graph().as_default() as graph, tf.device(task_name(job_name, task_index)):
        fetches = build()
    return graph, fetches, tf.ConfigProto(device_filters=[task_name(job_name, task_index)])


def _on_task(target, job_name, task_index, build, timeout_secs=None):
    """Runs what build() makes on that task (within timeout_secs) in a session
    at target; returns what it fetched. Raises tf.errors.OpError."""
    graph, fetches, config = _task_graph(job_name, task_index, build)
    if timeout_secs is not None:
        config.operation_timeout_in_ms = max(1, int(timeout_secs * 1000))
    sess = tf.Session(target, graph=graph, config=config)
    try:
        return sess.run(fetches)
    finally:
        with contextlib.suppress(tf.errors.OpError):
            sess.close()


def cluster_view(cluster, sync_replicas, replicas_to_aggregate):
    """What a task was told of the cluster, as JSON: its hosts and flags."""
    return json.dumps({'ps': cluster['ps'], 'worker': cluster['worker'],
                       'sync_replicas': sync_replicas,
                       'replicas_to_aggregate': replicas_to_aggregate}, sort_keys=True)


def _describe_view(view):
    """A cluster view in words."""
    view = json.loads(view)
    return 'ps %s, workers %s, %s' % (
        ' '.join(view['ps']), ' '.join(view['worker']),
        'synchronous of %d' % view['replicas_to_aggregate'] if view['sync_replicas']
        else 'asynchronous')


def _view_variable(value=''):
    """The variable that holds a task's cluster view: the same in every graph."""
    return tf.Variable(value, name=VIEW_VARIABLE, trainable=False, collections=[],
                       use_resource=True)


def publish_view(server, job_name, task_index, view):
    """Puts this task's cluster view in its own server, for the others to read."""
    _on_task(server.target, job_name, task_index, lambda: _view_variable(view).initializer)


def task_view(job_name, task_index, address, timeout_secs):
    """That task's cluster view: None if it did not answer within
    timeout_secs, '' if it has published none yet."""
    try:
        return _on_task('grpc://' + address, job_name, task_index,
                        lambda: _view_variable().read_value(), timeout_secs).decode()
    except tf.errors.FailedPreconditionError:
        return ''
    except tf.errors.OpError:
        return None


def done_queue():
    """The queue on a parameter server that takes each worker's index when it
    is done, -1 - index if it ended with an error."""
    return tf.FIFOQueue(-1, tf.int32, shapes=[], shared_name=DONE_QUEUE_NAME,
                        name=DONE_QUEUE_NAME)


def say_done(cluster, task_index, timeout_secs, failed=False, skip=()):
    """Tells each parameter server but those in skip that this worker is
    done, and whether it failed, giving each timeout_secs at most."""
    value = -1 - task_index if failed else task_index
    for ps_index, address in enumerate(cluster['ps']):
        if ('ps', ps_index) not in skip:
            with contextlib.suppress(tf.errors.OpError):
                _on_task('grpc://' + address, 'ps', ps_index, lambda: done_queue().enqueue(value),
                         min(DONE_TIMEOUT_SECS, timeout_secs))


def watch(cluster, own_view, tasks, timeout_secs, on_lost, on_other_cluster, on_stuck=None,
          last_progress=None, joined_running=None):
    """Starts a thread that reads, every PROBE_INTERVAL_SECS, the cluster view
    of each task that tasks() gives, and names in one line a task that stops
    answering, answers again, or has not started after timeout_secs.

    Args:
      tasks: a function giving the (job_name, task_index) to watch.
      on_lost: called (job_name, task_index) for one silent for timeout_secs; tasks() must drop it.
      on_other_cluster: called (job_name, task_index, message) for one whose view is not own_view.
      on_stuck, last_progress: on_stuck(message) is called when last_progress(), the monotonic
        time of the last training step, is STUCK_TIMEOUTS x timeout_secs old, every task answering.
      joined_running: true once this task joined a cluster that had trained (a restart): then
        a task silent for timeout_secs is lost even if it never answered (it died first).

    Returns:
      A threading.Event: set it to end the watch.
    """
    stop = threading.Event()
    interval = min(PROBE_INTERVAL_SECS, timeout_secs / 3)

    def watch_tasks():
        started = every_task_answers_since = time.monotonic()
        last_answer, quiet, waiting_said, silent_since, joined_at = {}, set(), set(), {}, None
        while not stop.wait(interval):
            if joined_at is None and joined_running and joined_running():
                joined_at = time.monotonic()
            for task in tasks():
                view = task_view(*task, cluster[task[0]][task[1]],
                                 max(interval, PROBE_TIMEOUT_SECS))
                now, who = time.monotonic(), _task_at(cluster, *task)
                if view is not None:
                    if view and view != own_view:
                        on_other_cluster(*task, '%s was started with another cluster (%s) than '
                                         'this task (%s): start every task with the same '
                                         '--ps_hosts, --worker_hosts and --sync_replicas, or the '
                                         'same TF_CONFIG cluster' % (who, _describe_view(view),
                                                                     _describe_view(own_view)))
                    if task in quiet:
                        quiet.discard(task)
                        print('%s answers again.' % who, flush=True)
                    last_answer[task] = now
                    silent_since.pop(task, None)
                    continue
                every_task_answers_since = now
                silent_since.setdefault(task, now)
                if task in last_answer:
                    if task not in quiet:
                        quiet.add(task)
                        print('%s does not answer: waiting for it up to %d s '
                              '(--task_timeout_secs).' % (who, timeout_secs), flush=True)
                    if now - last_answer[task] >= timeout_secs:
                        on_lost(*task)
                elif joined_at and now - max(silent_since[task], joined_at) >= timeout_secs:
                    on_lost(*task)
                elif now - started >= timeout_secs and task not in waiting_said:
                    waiting_said.add(task)
                    print('Waiting for %s to start.' % who, flush=True)
                if stop.is_set():
                    return
            progress = last_progress() if last_progress else None
            if progress is not None and (time.monotonic() - max(progress, every_task_answers_since)
                                         >= STUCK_TIMEOUTS * timeout_secs):
                on_stuck('no training step for %d s (%d x --task_timeout_secs) although every '
                         'task answers: the cluster is stuck'
                         % (STUCK_TIMEOUTS * timeout_secs, STUCK_TIMEOUTS))

    threading.Thread(target=watch_tasks, name='watch_tasks', daemon=True).start()
    return stop


def lost_message(cluster, job_name, task_index, timeout_secs):
    """What a task says when it has lost contact with another."""
    return ('lost contact with %s: no answer for %d s (--task_timeout_secs)'
            % (_task_at(cluster, job_name, task_index), timeout_secs))


def say_error(message):
    """Prints message as the scripts print an error: one line on stderr."""
    print(error_line(message), file=sys.stderr, flush=True)


def exit_now(status):
    """Ends the process at once, its output flushed: TensorFlow cannot shut a
    gRPC server down, and Python's own exit can abort in its destructor."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def run_parameter_server(cluster, task_index, view, config, timeout_secs):
    """Serves the variables until every worker is done or lost, or a signal
    comes; a worker that failed or has another cluster is named, and waited
    for still: it may start again. Returns the exit status: 1 if a worker was
    lost, or failed and did not start again; else 0."""
    num_workers = len(cluster['worker'])
    done, failed, lost, other_cluster, finished = set(), set(), set(), set(), threading.Event()

    def stop_on_signal(signum, unused_frame):
        print('Stopped by signal %d.' % signum, flush=True)
        finished.set()

    for signum in (signal.SIGINT, signal.SIGTERM):  # Before it says it serves.
        signal.signal(signum, stop_on_signal)
    server = start_server(cluster, 'ps', task_index, config)
    publish_view(server, 'ps', task_index, view)
    print('Parameter server %s: serving %d worker(s).'
          % (_task_at(cluster, 'ps', task_index), num_workers), flush=True)

    def ended(worker_index, done_or_lost):
        done_or_lost.add(worker_index)
        if len(done | lost) == num_workers:
            finished.set()

    def collect_done():
        graph, worker_done, session_config = _task_graph('ps', task_index,
                                                         lambda: done_queue().dequeue())
        with tf.Session(server.target, graph=graph, config=session_config) as sess:
            while len(done | lost) < num_workers:
                value = int(sess.run(worker_done))
                if value < 0:
                    failed.add(-1 - value)
                    print('%s ended with an error.' % task_name('worker', -1 - value), flush=True)
                else:
                    failed.discard(value)
                    ended(value, done)

    def on_lost(job_name, worker_index):
        say_error(lost_message(cluster, job_name, worker_index, timeout_secs)
                  + ': no longer waiting for it')
        ended(worker_index, lost)

    def on_other_cluster(job_name, worker_index, message):
        if worker_index not in other_cluster:
            other_cluster.add(worker_index)
            print(message + '.', flush=True)

    threading.Thread(target=collect_done, name='collect_done', daemon=True).start()
    watch(cluster, view, lambda: [('worker', i) for i in range(num_workers)
                                  if i not in done | lost], timeout_secs, on_lost, on_other_cluster)
    finished.wait()
    if len(done | lost) == num_workers:
        if not lost and not failed:
            print('All %d worker(s) are done: stopping.' % num_workers, flush=True)
        # A worker closes its session with this server after it said it is
        # done, and would wait on the close if the server were gone.
        deadline = time.monotonic() + timeout_secs
        for worker_index in done:
            while time.monotonic() < deadline and task_view(
                    'worker', worker_index, cluster['worker'][worker_index],
                    PROBE_INTERVAL_SECS / 2) is not None:
                time.sleep(PROBE_INTERVAL_SECS / 10)
    return 1 if lost or failed else 0


class SyncReplicasHook(tf.train.SessionRunHook):
    """SyncReplicasOptimizer.make_session_run_hook(is_chief, num_tokens=0),
    except that the chief's gradient-applying thread ends quietly with its
    session; a worker that ends closes the token queue, so that the others
    stop waiting for it; and a restarted chief that finds the model on the
    parameter servers hands each other worker a token, since a chief killed
    mid-step leaves the gradient accumulators out of step and the workers
    waiting for ever (docs/DISTRIBUTED.md)."""

    def __init__(self, sync_optimizer, is_chief, num_workers):
        self._sync_optimizer, self._is_chief = sync_optimizer, is_chief
        self._num_workers, self._rejoins = num_workers, False

    def begin(self):
        # The session manager has made sure of what this checks.
        self._sync_optimizer.ready_for_local_init_op.mark_used()
        runner = self._sync_optimizer.get_chief_queue_runner()  # Its queue: the tokens.
        self._close_tokens = runner.queue.close()
        if not self._is_chief:
            self._local_init_op = self._sync_optimizer.local_step_init_op
            return
        self._local_init_op = self._sync_optimizer.chief_init_op
        self._init_tokens_op = self._sync_optimizer.get_init_tokens_op(num_tokens=0)
        global_step = tf.train.get_global_step()
        with tf.device(global_step.device):  # Where the token queue is.
            missing = tf.maximum(0, self._num_workers - 1 - runner.queue.size())
            self._hand_out_tokens = runner.queue.enqueue_many(
                tf.fill(tf.reshape(missing, [1]), global_step))
        self._model_is_initialized = tf.equal(
            tf.size(tf.report_uninitialized_variables(tf.global_variables())), 0)
        self._runner = tf.train.QueueRunner(  # It never closes the token queue.
            runner.queue, runner.enqueue_ops, close_op=tf.no_op(), cancel_op=tf.no_op(),
            queue_closed_exception_types=(tf.errors.OutOfRangeError, tf.errors.CancelledError,
                                          tf.errors.AbortedError, tf.errors.UnavailableError))

    def before_restore(self, session):
        """The chief calls it in each new session, before restoring the model."""
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


class ThenAverage:
    """An optimizer that also updates the weights' moving averages after its
    step. SyncReplicasOptimizer applies through it, so that its tokens let
    the workers go on only once the averages are updated too."""

    def __init__(self, opt, variable_averages):
        self._opt, self._variable_averages = opt, variable_averages

    def apply_gradients(self, grads_and_vars, global_step=None, name=None):
        apply_op = self._opt.apply_gradients(grads_and_vars, global_step, name)
        with tf.control_dependencies([apply_op]):
            return self._variable_averages.apply(tf.trainable_variables())

    def __getattr__(self, name):
        return getattr(self._opt, name)


class ProgressHook(tf.train.SessionRunHook):
    """Notes when the session was created (started), whether the cluster had trained
    before (joined_running), and the time.monotonic() of the last training step."""

    def __init__(self):
        self.started, self.last_step_time, self.joined_running = threading.Event(), None, False

    def after_create_session(self, session, coord):
        self.joined_running = session.run(tf.train.get_global_step()) > 0
        self.last_step_time = time.monotonic()
        self.started.set()

    def after_run(self, run_context, run_values):
        self.last_step_time = time.monotonic()


def stop_at_once_until(started, on_signal):
    """Makes Ctrl-C and SIGTERM call on_signal(signum) at once until started
    is set: until then a worker waits inside TensorFlow, where Python runs no
    signal handler, so a thread reads the signals from a wakeup fd."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    signal.set_wakeup_fd(write_fd)

    def read_signals():
        while True:
            signum = os.read(read_fd, 1)[0]
            if signum in (signal.SIGINT, signal.SIGTERM) and not started.is_set():
                on_signal(signum)

    threading.Thread(target=read_signals, name='stop_at_once', daemon=True).start()


def free_ports(count):
    """count TCP ports of 127.0.0.1 that are free now."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for each in sockets:
            each.bind(('127.0.0.1', 0))
        return [each.getsockname()[1] for each in sockets]


def run_local_cluster(command, num_workers, timeout_secs):
    """Runs command (a task's, less its cluster flags) as one parameter server
    and num_workers workers on free 127.0.0.1 ports, their lines prefixed
    '[ps0] ', '[worker1] '... A first Ctrl-C or SIGTERM goes to the workers,
    then to the parameter server if it does not stop by itself; a second kills
    every task. Returns the exit status: 0 if every task exited with 0, else 1."""
    ports = free_ports(num_workers + 1)
    hosts = ['--ps_hosts=127.0.0.1:%d' % ports[0],
             '--worker_hosts=' + ','.join('127.0.0.1:%d' % port for port in ports[1:])]
    env = {name: value for name, value in os.environ.items() if name != 'TF_CONFIG'}
    tasks, relays = {}, []
    for job_name, task_index in [('ps', 0)] + [('worker', i) for i in range(num_workers)]:
        name = '%s%d' % (job_name, task_index)
        tasks[name] = subprocess.Popen(
            command + hosts + ['--job_name=%s' % job_name, '--task_index=%d' % task_index],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
            start_new_session=True)  # Ctrl-C reaches this process only.
        for stream, out in ((tasks[name].stdout, sys.stdout), (tasks[name].stderr, sys.stderr)):
            relays.append(threading.Thread(target=_relay, args=(stream, '[%s] ' % name, out),
                                           daemon=True))
            relays[-1].start()
    workers, ps = [tasks[name] for name in tasks if name != 'ps0'], tasks['ps0']
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
        _wait_for(workers, stop_requested, timeout_secs + LOCAL_CLUSTER_STOP_SECS)
        _wait_for([ps], None, LOCAL_CLUSTER_STOP_SECS)  # It stops by itself.
        if ps.poll() is None:
            ps.send_signal(signal.SIGTERM)
            _wait_for([ps], None, LOCAL_CLUSTER_STOP_SECS)
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
        say_error('%s failed' % ', '.join(failed))
    return 1 if failed else 0


def _relay(stream, prefix, out):
    """Copies each line of stream to out, prefixed."""
    for line in stream:
        out.write(prefix + line)
        out.flush()


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
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.2)

"""A binary to train CIFAR-10 on several machines: parameter servers (job
"ps") hold the variables; each worker trains the towers of
cifar10_multi_gpu_train.py on its own data and sends their gradient, which a
SyncReplicasOptimizer averages (--sync_replicas, the default) or which is
applied as it comes. Worker 0, the chief, writes the checkpoints into its
--train_dir, which cifar10_eval.py scores and any trainer resumes.

Usage, one command per machine (one parameter server, two workers):

  python cifar10_distributed_train.py --job_name=ps --task_index=0 \\
      --ps_hosts=ps0:2222 --worker_hosts=worker0:2222,worker1:2222
  python cifar10_distributed_train.py --job_name=worker --task_index=0 \\
      --ps_hosts=ps0:2222 --worker_hosts=worker0:2222,worker1:2222
  python cifar10_distributed_train.py --job_name=worker --task_index=1 \\
      --ps_hosts=ps0:2222 --worker_hosts=worker0:2222,worker1:2222

or TF_CONFIG='{"cluster": {"ps": [...], "worker": [...]}, "task": {"type":
"worker", "index": 1}}' instead of the four cluster flags; --local_cluster=2
runs such a cluster on this machine. Each worker takes cifar10_train.py's
flags. A task out of contact for --task_timeout_secs stops the tasks that
need it with one line (docs/DISTRIBUTED.md). The servers have no
authentication: run the cluster only on a private network.
"""

import contextlib
import os
import sys

import cifar10
import cifar10_multi_gpu_train
import cifar10_train
from cifar10_support import checkpoints
from cifar10_support import cluster as cluster_lib
from cifar10_support.runtime import UserError, tf

FLAGS = tf.app.flags.FLAGS

tf.app.flags.DEFINE_enum('job_name', None, ['ps', 'worker'],
                         """This task's job: a parameter server or a worker.""")
tf.app.flags.DEFINE_integer('task_index', None, """This task's index in its job (worker 0 is
                            the chief).""", lower_bound=0)
tf.app.flags.DEFINE_list('ps_hosts', [], """The parameter servers, comma-separated host:port.""")
tf.app.flags.DEFINE_list('worker_hosts', [], """The workers, comma-separated host:port.""")
tf.app.flags.DEFINE_boolean('sync_replicas', True, """Average one gradient per worker per
                            step; false applies each worker's gradient as it comes.""")
tf.app.flags.DEFINE_integer('replicas_to_aggregate', None, """Gradients averaged per
                            synchronous step; default the number of workers.""", lower_bound=1)
tf.app.flags.DEFINE_integer('task_timeout_secs', 60, """Seconds a task may stay out of contact
                            before the tasks that need it stop.""", lower_bound=1)
tf.app.flags.DEFINE_integer('local_cluster', 0, """Start one parameter server and this many
                            workers on this machine (127.0.0.1).""", lower_bound=0)

CLUSTER_FLAGS = ['job_name', 'task_index', 'ps_hosts', 'worker_hosts']
FLAGS_USED = cifar10_multi_gpu_train.FLAGS_USED + CLUSTER_FLAGS + [
    'sync_replicas', 'replicas_to_aggregate', 'task_timeout_secs', 'local_cluster']


def _given(name):
    """Whether the flag was given (on the command line, or set by a test)."""
    return not FLAGS[name].using_default_value


def cluster_from_flags():
    """(cluster, job_name, task_index) from the flags or TF_CONFIG; cluster
    maps 'ps' and 'worker' to lists of 'host:port', worker 0 the chief.
    UserError if the cluster is missing, given twice, incomplete or
    malformed, or this task or --replicas_to_aggregate do not fit it."""
    given = [name for name in CLUSTER_FLAGS if _given(name)]
    if os.environ.get('TF_CONFIG') and given:
        raise UserError('the cluster is given twice, by TF_CONFIG and by --%s: give either '
                        'the four cluster flags or TF_CONFIG' % given[0])
    if os.environ.get('TF_CONFIG'):
        cluster, job_name, task_index = cluster_lib.cluster_from_tf_config()
        source = 'TF_CONFIG'
    elif not given:
        raise UserError('no cluster: give --job_name, --task_index, --ps_hosts and '
                        '--worker_hosts, or TF_CONFIG (README, Train on several machines); or '
                        'try --local_cluster=2')
    else:
        missing = [name for name in CLUSTER_FLAGS if name not in given]
        if missing:
            raise UserError('--%s %s missing: give all of --job_name, --task_index, --ps_hosts '
                            'and --worker_hosts' % (', --'.join(missing),
                                                    'is' if len(missing) == 1 else 'are'))
        cluster = {'ps': cluster_lib.parse_hosts(FLAGS.ps_hosts, '--ps_hosts'),
                   'worker': cluster_lib.parse_hosts(FLAGS.worker_hosts, '--worker_hosts')}
        job_name, task_index, source = FLAGS.job_name, FLAGS.task_index, '--task_index'
    addresses = cluster['ps'] + cluster['worker']
    for address in addresses:
        if addresses.count(address) > 1:
            raise UserError('%s is named twice in the cluster: each task needs its own '
                            'host:port' % address)
    if not 0 <= task_index < len(cluster[job_name]):
        raise UserError('%s gives task %d of job %s, which has tasks 0 to %d'
                        % (source, task_index, job_name, len(cluster[job_name]) - 1))
    if _given('replicas_to_aggregate'):
        if not FLAGS.sync_replicas:
            raise UserError('--replicas_to_aggregate applies to synchronous training: leave it '
                            'out with --sync_replicas=false')
        if FLAGS.replicas_to_aggregate > len(cluster['worker']):
            raise UserError('--replicas_to_aggregate=%d, but the cluster has %d worker(s): at '
                            'most that many' % (FLAGS.replicas_to_aggregate,
                                                len(cluster['worker'])))
    return cluster, job_name, task_index


def _replicas(cluster):
    """Gradients averaged per synchronous step."""
    return FLAGS.replicas_to_aggregate or len(cluster['worker'])


def build_worker_graph(cluster, task_index, next_batch, devices):
    """Builds a worker's part of the graph: the variables on the parameter
    servers under the single-device names, a tower fed by next_batch() on
    each of devices (without job or task), their gradient applied in sync or
    as it comes. Returns train_op, total_loss, summary_op, global_step, and
    the hooks the step needs (a cluster.SyncReplicasHook if in sync)."""
    num_workers = len(cluster['worker'])
    sync_optimizers = []

    def synchronize(opt, variable_averages):
        sync_optimizers.append(tf.train.SyncReplicasOptimizer(
            cluster_lib.ThenAverage(opt, variable_averages),
            replicas_to_aggregate=_replicas(cluster), total_num_replicas=num_workers))
        return sync_optimizers[-1]

    device_setter = tf.train.replica_device_setter(
        worker_device=cluster_lib.task_name('worker', task_index),
        cluster=tf.train.ClusterSpec(cluster))
    with tf.device(device_setter), tf.device('/cpu:0'):
        global_step = tf.train.get_or_create_global_step()
        train_op, total_loss, summary_op = cifar10_multi_gpu_train.build_training(
            global_step, next_batch, devices,
            replicas_per_step=_replicas(cluster) if FLAGS.sync_replicas else 1,
            wrap_optimizer=synchronize if FLAGS.sync_replicas else None)
    hooks = [cluster_lib.SyncReplicasHook(optimizer, task_index == 0, num_workers)
             for optimizer in sync_optimizers]
    return train_op, total_loss, summary_op, global_step, hooks


def run_worker(cluster, task_index, view):
    """Trains as worker task_index (0 is the chief), publishing its cluster
    view; a task it needs lost, a parameter server with another cluster, or
    a stuck cluster ends the process with one line and status 1. Ctrl-C or
    SIGTERM ends it at once before its session exists, else after its step."""
    timeout_secs = FLAGS.task_timeout_secs
    config = cifar10.session_config(FLAGS.log_device_placement,
                                    FLAGS.num_gpus if FLAGS.device_type == 'cpu' else 1)
    if _given('num_gpus') or _given('device_type'):
        devices = cifar10_multi_gpu_train.tower_devices(config, FLAGS.num_gpus, FLAGS.device_type)
    else:  # One tower, on the GPU if there is one, as cifar10_train.py places its model.
        devices = ['/gpu:0' if tf.config.list_physical_devices('GPU') else '/cpu:0']
    server = cluster_lib.start_server(cluster, 'worker', task_index, config)
    cluster_lib.publish_view(server, 'worker', task_index, view)

    def stop(message, skip=()):
        message += ': stopping'
        if task_index == 0:
            latest = checkpoints.newest_whole_checkpoint(FLAGS.train_dir)
            message += ('; the last checkpoint, %s, is intact' % latest if latest
                        else '; no checkpoint was written yet')
        cluster_lib.say_error(message)
        cluster_lib.say_done(cluster, task_index, timeout_secs, failed=True, skip=skip)
        cluster_lib.exit_now(1)  # The main thread may wait on a lost task for ever.

    def on_lost(job_name, index):
        stop(cluster_lib.lost_message(cluster, job_name, index, timeout_secs),
             skip=[(job_name, index)])

    def on_other_cluster(job_name, other_index, message):
        if job_name == 'ps':  # The parameter servers' cluster is the reference.
            stop(message)

    def on_signal(signum):
        print('Stopped by signal %d before training.' % signum, flush=True)
        cluster_lib.say_done(cluster, task_index, timeout_secs)
        cluster_lib.exit_now(0)

    needed = [('ps', i) for i in range(len(cluster['ps']))] + [
        ('worker', i) for i in range(len(cluster['worker']))
        if i != task_index and FLAGS.sync_replicas]  # The other workers if in sync.
    progress = cluster_lib.ProgressHook()
    stop_watching = cluster_lib.watch(cluster, view, lambda: needed, timeout_secs, on_lost,
                                      on_other_cluster, stop, lambda: progress.last_step_time,
                                      lambda: progress.joined_running)
    cluster_lib.stop_at_once_until(progress.started, on_signal)
    failed = True
    try:
        cifar10.maybe_download_and_extract()  # The others see the server answer meanwhile.
        worker_cpu = cluster_lib.task_name('worker', task_index) + '/cpu:0'
        with tf.Graph().as_default():
            with tf.device(worker_cpu):  # Its input pipeline on its CPU.
                images, labels = cifar10.distorted_inputs()
                batch_queue = cifar10_multi_gpu_train.prefetch_queue(
                    [images, labels], capacity=2 * len(devices))
            train_op, total_loss, summary_op, global_step, sync_hooks = build_worker_graph(
                cluster, task_index, batch_queue.dequeue, devices)
            config.device_filters.extend(['/job:ps', cluster_lib.task_name('worker', task_index)])
            examples_per_step = len(devices) * FLAGS.batch_size * (
                _replicas(cluster) if FLAGS.sync_replicas else 1)
            with tf.device(worker_cpu):  # The chief's Saver writes its checkpoints itself.
                cifar10_train.train_loop(
                    train_op, total_loss, global_step, num_towers=len(devices),
                    summary_op=summary_op, config=config, master=server.target,
                    is_chief=task_index == 0, hooks=sync_hooks + [progress],
                    before_restore=(sync_hooks[0].before_restore
                                    if sync_hooks and task_index == 0 else None),
                    cluster_examples_per_step=examples_per_step if task_index == 0 else None)
        failed = False
    finally:
        stop_watching.set()
        cluster_lib.say_done(cluster, task_index, timeout_secs, failed=failed)


def main(argv=None):  # pylint: disable=unused-argument
    if FLAGS.local_cluster:
        given = [name for name in CLUSTER_FLAGS if _given(name)]
        if given or os.environ.get('TF_CONFIG'):
            raise UserError('--local_cluster starts a cluster of its own: leave out %s'
                            % ('--' + given[0] if given else 'TF_CONFIG'))
        cifar10.maybe_download_and_extract()  # Once, before the workers start.
        passed_on = sorted(FLAGS[name].serialize() for name in FLAGS_USED
                           if _given(name) and name not in CLUSTER_FLAGS + ['local_cluster'])
        sys.exit(cluster_lib.run_local_cluster(
            [sys.executable, os.path.abspath(__file__)] + passed_on, FLAGS.local_cluster,
            FLAGS.task_timeout_secs))
    cluster, job_name, task_index = cluster_from_flags()
    view = cluster_lib.cluster_view(cluster, FLAGS.sync_replicas, _replicas(cluster))
    if job_name == 'ps':
        cluster_lib.exit_now(cluster_lib.run_parameter_server(
            cluster, task_index, view, cifar10.session_config(), FLAGS.task_timeout_secs))
    try:
        with (checkpoints.claim_train_dir(FLAGS.train_dir) if task_index == 0
              else contextlib.nullcontext()):
            run_worker(cluster, task_index, view)
    except (UserError, FloatingPointError) as e:
        cluster_lib.say_error(str(e))
        cluster_lib.exit_now(1)
    cluster_lib.exit_now(0)


def run():
    """Console-script entry point: parses the flags and runs this task."""
    cifar10.run(main, FLAGS_USED)


if __name__ == '__main__':
    run()

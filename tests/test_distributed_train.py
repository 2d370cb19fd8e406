"""The distributed trainer: a parameter server and workers on 127.0.0.1."""

import contextlib
import json
import os
import random
import re
import signal
import threading
import time

import numpy as np
import pytest
from absl.testing import flagsaver
from helpers import (
    assert_meta_graphs_restore,
    checkpoint_steps,
    free_ports,
    local_cluster_spec,
    once_per_run,
    random_batch_and_model,
    read_events,
    run_script,
    script_env,
    train_flags,
)

import cifar10
import cifar10_distributed_train
import cifar10_multi_gpu_train
from cifar10 import tf
from cifar10_support import cluster as cluster_lib

SCRIPT = 'cifar10_distributed_train.py'
BATCH = 8
# Lines the workers log: '[worker1] <date> <time>: step 10, loss = ...'.
LOG_LINE = re.compile(r'^\[worker(\d)\] \S+ \S+: step (\d+), loss = \d+\.\d\d '
                      r'\((\d+\.\d) examples/sec; \d+\.\d{3} sec/batch'
                      r'(?:; cluster (\d+\.\d) examples/sec)?\)$', re.MULTILINE)
# A cluster run: few steps of small batches, a line every 10 steps.
CLUSTER_FLAGS = dict(batch_size=16, max_steps=30, save_checkpoint_steps=10, log_frequency=10)
# The --local_cluster run's workers each have two towers of 8, on CPU devices.
TOWER_FLAGS = dict(batch_size=8, device_type='cpu', num_gpus=2)
LOST_DEADLINE_SECS = 60


def constant_batches(images, labels, parts):
    """next_batch for build_training: the parts of one fixed batch, in turn."""
    image_parts = iter(np.split(images, parts))
    label_parts = iter(np.split(labels, parts))
    return lambda: (tf.constant(next(image_parts)), tf.constant(next(label_parts)))


def load_initial_values(sess, initial_values):
    for variable in tf.global_variables():  # Weights and their averages.
        name = variable.op.name.replace('/ExponentialMovingAverage', '')
        if name in initial_values:
            variable.load(initial_values[name], sess)


def averaged_model(sess):
    """The weights and their moving averages, by checkpoint name."""
    return {v.op.name: sess.run(v) for v in tf.global_variables()
            if v.op.name.split('/')[1:2] in (['weights'], ['biases'])}


def one_trainer_step(images, labels, initial_values):
    with tf.Graph().as_default(), tf.device('/cpu:0'):
        global_step = tf.train.get_or_create_global_step()
        train_op, _, _ = cifar10_multi_gpu_train.build_training(
            global_step, constant_batches(images, labels, 1), ['/cpu:0'])
        with tf.Session(config=cifar10.session_config()) as sess:
            sess.run(tf.global_variables_initializer())
            load_initial_values(sess, initial_values)
            sess.run(train_op)
            return averaged_model(sess)


def two_worker_sessions(images, labels, initial_values, start_chief=True):
    """Starts a parameter server and two workers as servers in this process,
    builds each worker's graph on its half of the batch, and opens its
    session as the trainer does; the chief initializes the model (and with
    start_chief=False does nothing more, as if it died then).

    Returns:
      The two sessions, their train ops and their hooks.
    """
    ps_port, *worker_ports = free_ports(3)
    cluster = {'ps': ['127.0.0.1:%d' % ps_port],
               'worker': ['127.0.0.1:%d' % port for port in worker_ports]}
    servers = [tf.train.Server(tf.train.ClusterSpec(cluster), job_name=job, task_index=index)
               for job, index in [('ps', 0), ('worker', 0), ('worker', 1)]]
    halves = iter(zip(np.split(images, 2), np.split(labels, 2), strict=True))
    sessions, train_ops, worker_hooks = [], [], []
    for index, server in enumerate(servers[1:]):
        graph = tf.Graph()
        with graph.as_default():
            train_op, _, _, _, hooks = cifar10_distributed_train.build_worker_graph(
                cluster, index, constant_batches(*next(halves), 1), ['/cpu:0'])
            for hook in hooks:
                hook.begin()
            sess = tf.Session(server.target, config=tf.ConfigProto(
                device_filters=['/job:ps', '/job:worker/task:%d' % index]))
            if index == 0:  # The chief initializes the model.
                sess.run(tf.global_variables_initializer())
                load_initial_values(sess, initial_values)
            if index == 0 and not start_chief:
                sessions.append(sess)
                train_ops.append(train_op)
                worker_hooks.append(hooks)
                continue
            sess.run(tf.local_variables_initializer())
            for hook in hooks:
                hook.after_create_session(sess, None)
        sessions.append(sess)
        train_ops.append(train_op)
        worker_hooks.append(hooks)
    return sessions, train_ops, worker_hooks


def restart_chief(old_session, hooks):
    """Opens a new session of the chief's graph on its server, as a chief
    started again does (the model is on the parameter server already)."""
    with old_session.graph.as_default():
        sess = tf.Session(old_session.sess_str, graph=old_session.graph,
                          config=tf.ConfigProto(device_filters=['/job:ps', '/job:worker/task:0']))
        for hook in hooks:
            hook.before_restore(sess)
        sess.run(tf.local_variables_initializer())
        for hook in hooks:
            hook.after_create_session(sess, None)
    return sess


def cluster_values(sess):
    """The model's values and the global step, read through a session."""
    with sess.graph.as_default():
        return averaged_model(sess), sess.run(tf.train.get_global_step())


def test_two_sync_workers_on_half_batches_update_like_one_trainer_on_the_whole_batch():
    images, labels, initial_values = random_batch_and_model(0, BATCH)
    with flagsaver.flagsaver(sync_replicas=True):
        sessions, train_ops, _ = two_worker_sessions(images, labels, initial_values)
    threads = [threading.Thread(target=sess.run, args=(train_op,))
               for sess, train_op in zip(sessions, train_ops, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), 'the step did not end'
    two_workers, global_step = cluster_values(sessions[0])
    for sess in sessions:
        sess.close()
    one_trainer = one_trainer_step(images, labels, initial_values)

    assert global_step == 1
    assert two_workers.keys() == one_trainer.keys()
    assert len(one_trainer) == 2 * len(initial_values)  # The weights and their averages.
    for name, value in one_trainer.items():
        np.testing.assert_allclose(two_workers[name], value, rtol=1e-4, atol=1e-6,
                                   err_msg=name)
    assert not np.allclose(one_trainer['conv1/weights'], initial_values['conv1/weights'])


def test_an_async_worker_applies_its_gradient_without_waiting_for_the_others():
    images, labels, initial_values = random_batch_and_model(1, BATCH)
    with flagsaver.flagsaver(sync_replicas=False):
        sessions, train_ops, _ = two_worker_sessions(images, labels, initial_values)
    sessions[1].run(train_ops[1])  # Worker 1 alone.
    values, global_step = cluster_values(sessions[0])
    for sess in sessions:
        sess.close()
    assert global_step == 1
    assert not np.allclose(values['conv1/weights'], initial_values['conv1/weights'])
    assert not np.allclose(values['conv1/weights/ExponentialMovingAverage'],
                           initial_values['conv1/weights'])


# A real cluster: --local_cluster=2 starts a parameter server and two
# workers as processes of their own.

@pytest.fixture(scope='module')
def local_cluster_run(tmp_path_factory, synthetic_data_dir):
    """Trains once with --local_cluster=2 (CLUSTER_FLAGS, TOWER_FLAGS).

    Returns:
      (train_dir, the CompletedProcess); do not write into train_dir.
    """
    return once_per_run(tmp_path_factory, 'local_cluster_run', lambda train_dir: run_script(
        SCRIPT, '--local_cluster=2', *train_flags(synthetic_data_dir, train_dir,
                                                  **CLUSTER_FLAGS | TOWER_FLAGS)))


def test_local_cluster_trains_and_every_task_ends_by_itself(local_cluster_run):
    _, result = local_cluster_run
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ''  # No task printed an error, nor TensorFlow's chatter.
    assert '[ps0] All 2 worker(s) are done: stopping.' in result.stdout.splitlines()
    assert all(line.startswith(('[ps0] ', '[worker0] ', '[worker1] '))
               for line in result.stdout.splitlines())


def test_each_worker_logs_its_own_rate_and_the_chief_the_clusters_too(local_cluster_run):
    _, result = local_cluster_run
    lines = LOG_LINE.findall(result.stdout)
    for worker in '01':
        assert [int(step) for w, step, _, _ in lines if w == worker] == [0, 10, 20], worker
    assert all(cluster for w, _, _, cluster in lines if w == '0')
    assert not any(cluster for w, _, _, cluster in lines if w == '1')
    for _, _, own, cluster in lines[1:]:
        if cluster:  # Two workers train each synchronous step.
            assert float(cluster) == pytest.approx(2 * float(own), rel=0.01)


def test_chiefs_checkpoints_hold_the_single_device_variable_names(local_cluster_run):
    train_dir, _ = local_cluster_run
    assert checkpoint_steps(train_dir) == [10, 20, 30]
    with tf.Graph().as_default():
        global_step = tf.train.get_or_create_global_step()
        images = tf.zeros([1, cifar10.IMAGE_SIZE, cifar10.IMAGE_SIZE, 3])
        cifar10.train(cifar10.loss(cifar10.inference(images), tf.constant([0])), global_step)
        single_device_names = {variable.op.name for variable in tf.global_variables()}
    assert {name for name, _ in tf.train.list_variables(str(train_dir))} == single_device_names


def test_chiefs_checkpoints_have_meta_graphs_that_tensorflow_alone_restores(
        local_cluster_run, tmp_path):
    train_dir, _ = local_cluster_run
    assert_meta_graphs_restore(train_dir, tmp_path)


def test_variables_live_on_the_ps_and_the_input_towers_and_checkpoints_on_the_chief(
        local_cluster_run):
    graph = read_events(local_cluster_run[0]).Graph()  # The chief's graph.
    devices = {node.name: node.device for node in graph.node}
    ps, chief = '/job:ps/task:0/device:CPU:0', '/job:worker/task:0/device:CPU:0'
    assert devices['global_step'] == devices['conv1/weights'] == ps
    assert devices['conv1/weights/ExponentialMovingAverage'] == ps
    assert devices['save/SaveV2'] == devices['save/RestoreV2'] == chief
    readers = [node for node in graph.node if node.op.startswith('FixedLengthRecordReader')]
    assert readers and all(reader.device == chief for reader in readers)
    convolutions = {node.name.split('/')[0]: node.device for node in graph.node
                    if node.op == 'Conv2D' and node.name.endswith('conv1/Conv2D')}
    assert convolutions == {'tower_0': chief, 'tower_1': chief.replace('CPU:0', 'CPU:1')}


def test_evaluator_scores_the_chiefs_checkpoint(local_cluster_run, synthetic_data_dir, tmp_path):
    result = run_script('cifar10_eval.py', '--data_dir=%s' % synthetic_data_dir,
                        '--checkpoint_dir=%s' % local_cluster_run[0],
                        '--eval_dir=%s' % tmp_path, '--run_once', '--batch_size=64')
    assert result.returncode == 0, result.stderr
    assert re.search(r'precision @ 1 = \d\.\d{3}', result.stdout)


def test_sigterm_to_the_local_cluster_stops_every_task_and_the_chief_saves(
        start_script, synthetic_data_dir, tmp_path):
    cluster = start_script(SCRIPT, '--local_cluster=2', *train_flags(
        synthetic_data_dir, tmp_path, **CLUSTER_FLAGS | dict(max_steps=100000)))
    cluster.wait_for(r'^\[worker0\] .*: step 10, ')
    cluster.proc.send_signal(signal.SIGTERM)
    returncode, output = cluster.finish()
    assert returncode == 0, output
    stopped_at = int(re.search(r'^\[worker0\] Stopped by signal 15 at step (\d+); the '
                               r'checkpoint is saved\.$', output, re.MULTILINE).group(1))
    assert re.search(r'^\[worker1\] Stopped by signal 15 at step \d+\.$', output, re.MULTILINE)
    assert '[ps0] All 2 worker(s) are done: stopping.' in output.splitlines()
    assert checkpoint_steps(tmp_path)[-1] == stopped_at


# Faults: tasks started one by one, killed with SIGKILL and started again.

def start_task(start_script, cluster, data_dir, train_dir, job_name, task_index,
               use_tf_config=False, **flags):
    """Starts one task of cluster, told its place by the cluster flags, or
    with use_tf_config by TF_CONFIG."""
    flags = train_flags(data_dir, train_dir, **CLUSTER_FLAGS | flags)
    if use_tf_config:
        tf_config = {'cluster': cluster, 'task': {'type': job_name, 'index': task_index}}
        return start_script(SCRIPT, *flags, env=script_env() | {
            'TF_CONFIG': json.dumps(tf_config)})
    return start_script(SCRIPT, *flags, '--job_name=%s' % job_name,
                        '--task_index=%d' % task_index, '--ps_hosts=%s' % cluster['ps'][0],
                        '--worker_hosts=%s' % ','.join(cluster['worker']))


def start_cluster(start_script, data_dir, train_dir, **flags):
    """Starts a parameter server and two workers; returns (cluster, tasks),
    tasks a dict of RunningScripts by 'ps0', 'worker0', 'worker1'."""
    cluster = local_cluster_spec(2)
    tasks = {'%s%d' % (job, index): start_task(start_script, cluster, data_dir, train_dir,
                                                job, index, **flags)
             for job, index in [('ps', 0), ('worker', 0), ('worker', 1)]}
    return cluster, tasks


def kill(task):
    task.proc.kill()
    task.proc.wait()


def assert_whole(checkpoint):
    reader = tf.train.load_checkpoint(checkpoint)
    for name in reader.get_variable_to_shape_map():
        reader.get_tensor(name)  # Every tensor reads back, checksums and all.


def test_a_parameter_server_stops_cleanly_on_sigterm(start_script, tmp_path):
    ps = start_task(start_script, local_cluster_spec(2), tmp_path, tmp_path, 'ps', 0)
    ps.wait_for(r'^Parameter server /job:ps/task:0 at 127\.0\.0\.1:\d+: serving 2 worker')
    ps.proc.send_signal(signal.SIGTERM)
    returncode, output = ps.finish()
    assert returncode == 0, output
    assert output.splitlines()[-1] == 'Stopped by signal 15.'


# The moments at which the kill test kills a task, each once (set
# CLUSTER_KILL_REPEATS=10 to repeat each ten times, to catch what fails
# rarely): (the task killed, when).
KILL_MOMENTS = [('worker0', 'right after a checkpoint'), ('worker0', 'during a step'),
                ('worker0', 'waiting for its token'), ('worker1', 'waiting for its token'),
                ('worker1', 'during a step'), ('ps0', 'during a step')]
KILL_REPEATS = int(os.environ.get('CLUSTER_KILL_REPEATS', '1'))
RECOVERY_DEADLINE_SECS = 90


class ClusterSteps:
    """Follows the steps the workers of a running cluster log."""

    def __init__(self, tasks):
        self.tasks = tasks
        self.last = {'worker0': -1, 'worker1': -1}

    def wait_past(self, worker, step, deadline_secs=RECOVERY_DEADLINE_SECS):
        """Waits until worker logs a step after step; returns it."""
        deadline = time.monotonic() + deadline_secs
        while self.last[worker] <= step:
            remaining = deadline - time.monotonic()
            assert remaining > 0, 'no step after %d from %s' % (step, worker)
            match = self.tasks[worker].wait_for(r': step (\d+), ', timeout=remaining)
            self.last[worker] = int(match.group(1))
        return self.last[worker]


def kill_at(moment, victim, tasks, steps, train_dir):
    """Kills victim with SIGKILL at that moment of its training."""
    other = {'worker0': 'worker1', 'worker1': 'worker0', 'ps0': 'worker1'}[victim]
    if moment == 'right after a checkpoint':
        saved = set(train_dir.glob('*.index'))
        deadline = time.monotonic() + RECOVERY_DEADLINE_SECS
        while set(train_dir.glob('*.index')) <= saved:
            assert time.monotonic() < deadline, 'no new checkpoint'
            time.sleep(0.005)
    elif moment == 'during a step':
        steps.wait_past(other, steps.last[other])
        time.sleep(random.uniform(0, 0.05))
    else:  # Waiting for its token: the other worker's gradient never comes.
        tasks[other].proc.send_signal(signal.SIGSTOP)
        time.sleep(1)
    kill(tasks[victim])
    if moment == 'waiting for its token':
        tasks[other].proc.send_signal(signal.SIGCONT)


def test_tasks_killed_at_any_moment_and_started_again_let_the_cluster_train_on(
        start_script, synthetic_data_dir, tmp_path):
    # The tasks learn their places from TF_CONFIG here.
    flags = dict(batch_size=16, max_steps=100000, save_checkpoint_steps=20, log_frequency=5)
    cluster, tasks = start_cluster(start_script, synthetic_data_dir, tmp_path,
                                   use_tf_config=True, **flags)
    steps = ClusterSteps(tasks)
    steps.wait_past('worker0', 20)
    for victim, moment in KILL_MOMENTS * KILL_REPEATS:
        step_at_kill = steps.last['worker0']
        kill_at(moment, victim, tasks, steps, tmp_path)
        tasks[victim] = start_task(start_script, cluster, synthetic_data_dir, tmp_path,
                                   victim[:-1], int(victim[-1]), use_tf_config=True, **flags)
        try:
            if victim != 'worker1':  # The chief restores its last checkpoint.
                tasks['worker0'].wait_for(r'^Resuming from .*/model\.ckpt-\d+ at step \d+\.$',
                                          timeout=RECOVERY_DEADLINE_SECS)
                steps.last['worker0'] = -1
            steps.tasks = tasks
            steps.wait_past('worker0', step_at_kill)  # Training goes on: nothing hangs.
            steps.wait_past('worker1', steps.last['worker1'])
        except AssertionError as e:
            raise AssertionError('after %s was killed %s: %s\n%s' % (victim, moment, e, '\n'.join(
                '--- %s:\n%s' % (name, ''.join(task.lines[-15:]))
                for name, task in tasks.items()))) from None

    tasks['worker0'].proc.send_signal(signal.SIGTERM)
    outputs = {}
    for name, task in tasks.items():
        returncode, outputs[name] = task.finish()
        assert returncode == 0, outputs[name]
        assert 'Traceback' not in outputs[name]
    stopped_at = int(re.search(r'^Stopped by signal 15 at step (\d+); the checkpoint is '
                               r'saved\.$', outputs['worker0'], re.MULTILINE).group(1))
    assert checkpoint_steps(tmp_path)[-1] == stopped_at
    assert_whole(tf.train.latest_checkpoint(str(tmp_path)))


@pytest.mark.parametrize('lost', ['worker1', 'ps0'])
def test_a_task_that_stays_dead_is_named_at_once_and_stops_the_others_with_one_line(
        lost, start_script, synthetic_data_dir, tmp_path):
    cluster, tasks = start_cluster(start_script, synthetic_data_dir, tmp_path,
                                 task_timeout_secs=5, max_steps=1000)
    tasks['worker0'].wait_for(r': step 10, ')
    kill(tasks.pop(lost))
    job, index = lost[:-1], int(lost[-1])
    lost_line = (r'^cifar10_distributed_train\.py: error: lost contact with /job:%s/task:%d at '
                 r'127\.0\.0\.1:\d+: no answer for 5 s \(--task_timeout_secs\): ' % (job, index))
    quiet_line = (r'^/job:%s/task:%d at 127\.0\.0\.1:\d+ does not answer: waiting for it up to '
                  r'5 s \(--task_timeout_secs\)\.$' % (job, index))

    outputs = {}
    for name, task in tasks.items():
        returncode, outputs[name] = task.finish(timeout=LOST_DEADLINE_SECS)
        assert returncode == 1, outputs[name]
        [said_quiet] = re.finditer(quiet_line, outputs[name], re.MULTILINE)
        [said_lost] = re.finditer(lost_line, outputs[name], re.MULTILINE)
        assert said_quiet.start() < said_lost.start()
        assert 'Traceback' not in outputs[name]
    last_good = re.search(r'the last checkpoint, (\S+), is intact$', outputs['worker0'],
                          re.MULTILINE).group(1)
    assert last_good == tf.train.latest_checkpoint(str(tmp_path))
    assert_whole(last_good)


def test_a_worker_started_with_another_cluster_stops_with_one_line_and_can_join_again(
        start_script, synthetic_data_dir, tmp_path):
    cluster = local_cluster_spec(2)
    other = dict(cluster, worker=cluster['worker'] + local_cluster_spec(1)['worker'])
    tasks = {name: start_task(start_script, each_cluster, synthetic_data_dir, tmp_path,
                              name[:-1], int(name[-1]))
             for name, each_cluster in [('ps0', cluster), ('worker0', cluster),
                                        ('worker1', other)]}
    returncode, output = tasks['worker1'].finish(timeout=LOST_DEADLINE_SECS)
    assert returncode == 1, output
    [line] = [line for line in output.splitlines() if ': error: ' in line]
    assert line.startswith('cifar10_distributed_train.py: error: /job:ps/task:0 at %s was '
                           'started with another cluster (' % cluster['ps'][0])
    assert ('workers %s, synchronous of 2' % ' '.join(cluster['worker'])) in line
    assert ('workers %s, synchronous of 3' % ' '.join(other['worker'])) in line

    tasks['worker1'] = start_task(start_script, cluster, synthetic_data_dir, tmp_path,
                                  'worker', 1)
    for task in tasks.values():
        returncode, output = task.finish()
        assert returncode == 0, output
    assert checkpoint_steps(tmp_path)[-1] == CLUSTER_FLAGS['max_steps']


# The cluster flags and TF_CONFIG.

HOSTS = dict(ps_hosts=['ps0:2222'], worker_hosts=['worker0:2222', 'worker1:2222'])
TF_CONFIG = ('{"cluster": {"ps": ["ps0:2222"], "worker": ["worker0:2222", "worker1:2222"]}, '
             '"task": {"type": "worker", "index": 1}}')


@pytest.mark.parametrize('flags, tf_config, expected', [
    (HOSTS | dict(job_name='worker', task_index=1), None,
     ({'ps': ['ps0:2222'], 'worker': ['worker0:2222', 'worker1:2222']}, 'worker', 1)),
    ({}, TF_CONFIG,
     ({'ps': ['ps0:2222'], 'worker': ['worker0:2222', 'worker1:2222']}, 'worker', 1)),
    # TF_CONFIG's chief is worker 0 here, its workers come after it.
    ({}, '{"cluster": {"chief": ["c:1"], "worker": ["w:2"], "ps": ["p:3"]}, '
         '"task": {"type": "worker", "index": 0}}',
     ({'ps': ['p:3'], 'worker': ['c:1', 'w:2']}, 'worker', 1)),
    ({}, '{"cluster": {"chief": ["c:1"], "worker": ["w:2"], "ps": ["p:3"]}, '
         '"task": {"type": "chief", "index": 0}}',
     ({'ps': ['p:3'], 'worker': ['c:1', 'w:2']}, 'worker', 0)),
])
def test_cluster_comes_from_the_four_flags_or_from_tf_config(flags, tf_config, expected,
                                                             monkeypatch):
    if tf_config:
        monkeypatch.setenv('TF_CONFIG', tf_config)
    with flagsaver.flagsaver(**flags):
        assert cifar10_distributed_train.cluster_from_flags() == expected


@pytest.mark.parametrize('flags, tf_config, message', [
    ({}, None, 'no cluster: give --job_name, --task_index, --ps_hosts and --worker_hosts, '
               'or TF_CONFIG'),
    (dict(job_name='worker', task_index=0), None,
     '--ps_hosts, --worker_hosts are missing: give all of'),
    (HOSTS | dict(task_index=0), None, '--job_name is missing'),
    (HOSTS | dict(job_name='worker', task_index=0, worker_hosts=['worker0']), None,
     "--worker_hosts: 'worker0' is not host:port (a port from 1 to 65535)"),
    (HOSTS | dict(job_name='ps', task_index=0, ps_hosts=['ps0:99999']), None,
     "--ps_hosts: 'ps0:99999' is not host:port"),
    (HOSTS | dict(job_name='worker', task_index=2), None,
     '--task_index gives task 2 of job worker, which has tasks 0 to 1'),
    (HOSTS | dict(job_name='ps', task_index=0, ps_hosts=['worker1:2222']), None,
     'worker1:2222 is named twice in the cluster'),
    (HOSTS | dict(job_name='worker', task_index=0, replicas_to_aggregate=3), None,
     '--replicas_to_aggregate=3, but the cluster has 2 worker(s)'),
    (HOSTS | dict(job_name='worker', task_index=0, replicas_to_aggregate=1,
                  sync_replicas=False), None,
     '--replicas_to_aggregate applies to synchronous training'),
    (dict(job_name='worker'), TF_CONFIG, 'the cluster is given twice, by TF_CONFIG and by '
                                         '--job_name'),
    ({}, '{"cluster": ', 'TF_CONFIG is not of the form {"cluster": '),
    ({}, '{"cluster": {"ps": ["p:1"], "worker": ["w:2"]}}', 'TF_CONFIG is not of the form'),
    ({}, TF_CONFIG.replace('"ps"', '"evaluator"'),
     "TF_CONFIG names the job 'evaluator', which this trainer does not run"),
    ({}, TF_CONFIG.replace('"type": "worker"', '"type": "master"'),
     "TF_CONFIG's task type is 'master': it must be chief, worker or ps"),
    ({}, TF_CONFIG.replace('"type": "worker"', '"type": "chief"'),
     "TF_CONFIG's task is chief 1, but its cluster has 0 chief(s)"),
    ({}, TF_CONFIG.replace('"index": 1', '"index": 5'),
     'TF_CONFIG gives task 5 of job worker, which has tasks 0 to 1'),
])
def test_missing_contradictory_or_malformed_cluster_is_a_clear_error(flags, tf_config, message,
                                                                    monkeypatch):
    if tf_config:
        monkeypatch.setenv('TF_CONFIG', tf_config)
    with flagsaver.flagsaver(**flags), pytest.raises(cifar10.UserError) as error:
        cifar10_distributed_train.cluster_from_flags()
    assert message in str(error.value)
    assert '\n' not in str(error.value)


def test_bad_cluster_flags_stop_the_script_with_one_line_before_any_server_starts(tmp_path):
    port = free_ports(1)[0]
    result = run_script(SCRIPT, '--job_name=ps', '--task_index=0',
                        '--ps_hosts=127.0.0.1:%d' % port, '--worker_hosts=127.0.0.1',
                        '--train_dir=%s' % tmp_path, timeout=60)
    assert result.returncode == 1
    assert result.stderr == ("cifar10_distributed_train.py: error: --worker_hosts: '127.0.0.1' "
                             "is not host:port (a port from 1 to 65535)\n")
    assert result.stdout == ''
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize('flags, tf_config', [(dict(job_name='worker'), None),
                                              ({}, TF_CONFIG)])
def test_local_cluster_refuses_a_cluster_given_otherwise(flags, tf_config, monkeypatch):
    if tf_config:
        monkeypatch.setenv('TF_CONFIG', tf_config)
    with flagsaver.flagsaver(local_cluster=2, **flags), pytest.raises(cifar10.UserError) as error:
        cifar10_distributed_train.main()
    assert str(error.value) == ('--local_cluster starts a cluster of its own: leave out %s'
                                % ('--job_name' if flags else 'TF_CONFIG'))


def test_a_restarted_chief_frees_a_worker_stuck_on_accumulators_a_dead_chief_left_out_of_step():
    # The state a chief killed in the middle of a step leaves: worker 1's
    # gradient is in every accumulator and worker 1 waits for its token,
    # but the dead chief's round already took it out of some accumulators
    # (taken here by hand) and never applied them.
    images, labels, initial_values = random_batch_and_model(3, BATCH)
    with flagsaver.flagsaver(sync_replicas=True):
        sessions, train_ops, hooks = two_worker_sessions(images, labels, initial_values,
                                                         start_chief=False)
    worker_ran, stop_worker = threading.Event(), threading.Event()

    def worker():
        with contextlib.suppress(tf.errors.OutOfRangeError):  # The tokens closed at the end.
            while not stop_worker.is_set():
                sessions[1].run(train_ops[1])
                worker_ran.set()

    threading.Thread(target=worker, daemon=True).start()
    with sessions[0].graph.as_default():
        accumulators = {v.op.name: v.shape for v in tf.trainable_variables()}
    with tf.Graph().as_default(), tf.device('/job:ps/task:0'):
        counts, takes = [], []
        for name, shape in sorted(accumulators.items()):
            accumulator = tf.ConditionalAccumulator(tf.float32, shape=shape,
                                                    shared_name=name + ':0/grad_accum')
            counts.append(accumulator.num_accumulated())
            if name.startswith(('local', 'softmax')):
                takes.append(accumulator.take_grad(1))
        with tf.Session(sessions[0].sess_str) as sess:
            deadline = time.monotonic() + 60
            while min(sess.run(counts)) < 1 and time.monotonic() < deadline:
                time.sleep(0.1)  # Worker 1's gradient has not reached them all yet.
            sess.run(takes)

    chief = restart_chief(sessions[0], hooks[0])
    chief_step = threading.Thread(target=chief.run, args=(train_ops[0],), daemon=True)
    chief_step.start()
    chief_step.join(timeout=60)
    stop_worker.set()
    hooks[0][0].end(chief)  # Closes the tokens: worker 1 stops waiting.
    assert not chief_step.is_alive(), 'the chief\'s step waits for ever'
    assert worker_ran.is_set()


def watch_a_silent_chief(monkeypatch, joined_running):
    """Watches a chief that never answers, as a worker with a session does,
    in a cluster that had trained before it joined (a restart) or had not.
    Returns (lost: an Event that on_lost sets, looks: a list that grows at
    each look, the watch's stop Event)."""
    lost, looks = threading.Event(), []
    monkeypatch.setattr(cluster_lib, 'task_view', lambda *args: looks.append(args))
    session_time = time.monotonic()
    stop = cluster_lib.watch(local_cluster_spec(1), 'view', lambda: [('worker', 0)], 0.3,
                             lambda *task: lost.set(), None, last_progress=lambda: session_time,
                             joined_running=lambda: joined_running)
    return lost, looks, stop


def test_a_task_that_dies_before_a_restarted_workers_first_look_is_lost(monkeypatch):
    lost, _, stop = watch_a_silent_chief(monkeypatch, joined_running=True)
    try:
        assert lost.wait(timeout=10)
    finally:
        stop.set()


def test_before_the_cluster_trains_a_worker_waits_for_a_task_that_never_answered(
        monkeypatch, capsys):
    lost, looks, stop = watch_a_silent_chief(monkeypatch, joined_running=False)
    try:
        deadline, output = time.monotonic() + 10, ''
        while 'Waiting for /job:worker/task:0' not in output:
            assert time.monotonic() < deadline, 'the watch did not say that it waits'
            output += capsys.readouterr().out
            time.sleep(0.01)
        looks_then = len(looks)
        while len(looks) < looks_then + 3:  # Three more looks, each past the timeout.
            assert time.monotonic() < deadline, 'the watch stopped looking'
            time.sleep(0.01)
        assert not lost.is_set()
    finally:
        stop.set()

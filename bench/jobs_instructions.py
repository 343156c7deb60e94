#!/usr/bin/env python3
"""The Redis server's instructions per job of the job system's scripts, counted exactly.

Time on a shared machine varies by half from run to run; the server's instruction count does
not. This starts a throwaway redis-server under valgrind's callgrind (on a free loopback port,
in a temp dir, stopped by PID), loads job_enqueue.lua and job_claim.lua from src/lua, and drives
them in bench/jobs' shape, with no client library in the way: enqueues of 48 plain jobs, then
four nodes each claiming up to 16 and ending (succeeded) what they claimed in their call
before, until every job ended. It prints one JSON line: server instructions per job, and per
empty claim call (no job to claim or end). With --reference REV, the scripts of git revision
REV are measured in the same run as the same-run reference (their arguments must be today's).

    python3 bench/jobs_instructions.py [--jobs 2000] [--reference b0e23bb]

Needs valgrind (callgrind_control) and redis-server.
"""
import argparse
import glob
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def scripts_of(rev):
    """job_enqueue and job_claim as loaded (lib includes expanded), from src/lua or git rev."""
    def read(path):
        if rev is None:
            with open(os.path.join(ROOT, path)) as f:
                return f.read()
        return subprocess.run(['git', '-C', ROOT, 'show', f'{rev}:{path}'], check=True,
                              capture_output=True, text=True).stdout

    def load(name):
        src = read(f'src/lua/{name}.lua')
        for inc in re.findall(r'--#include [a-z_]+\.lua', src):
            src = src.replace(inc, read('src/lua/lib/' + inc.split()[1]))
        return src
    return load('job_enqueue'), load('job_claim')


class Conn:
    """A RESP2 connection: enough for EVALSHA, SCRIPT LOAD, HSET and FLUSHALL."""

    def __init__(self, port):
        self.sock = socket.create_connection(('127.0.0.1', port))
        self.file = self.sock.makefile('rb')

    def send(self, *args):
        out = [b'*%d\r\n' % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b'$%d\r\n%s\r\n' % (len(a), a))
        self.sock.sendall(b''.join(out))

    def read(self):
        line = self.file.readline()
        kind, body = line[:1], line[1:-2]
        if kind == b'+':
            return body.decode()
        if kind == b'-':
            raise RuntimeError(body.decode())
        if kind == b':':
            return int(body)
        if kind == b'$':
            n = int(body)
            return None if n < 0 else self.file.read(n + 2)[:-2].decode()
        if kind == b'*':
            n = int(body)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise RuntimeError(f'unexpected reply {line!r}')

    def __call__(self, *args):
        self.send(*args)
        return self.read()


class Server:
    """redis-server under callgrind, instrumentation off until counted."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix='redcoord-callgrind-')
        with socket.socket() as s:
            s.bind(('127.0.0.1', 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen(
            ['valgrind', '--tool=callgrind', '--instr-atstart=no',
             f'--callgrind-out-file={self.dir}/cg.out', 'redis-server', '--port', str(self.port),
             '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(600):
            try:
                self.conn = Conn(self.port)
                if self.conn('PING') == 'PONG':
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError('redis-server under valgrind did not start')

    def control(self, *args):
        subprocess.run(['callgrind_control', *args, str(self.proc.pid)], capture_output=True)

    def count(self, work):
        """Server instructions while work() runs."""
        self.control('-i', 'on')
        self.control('-z')
        work()
        before = set(glob.glob(f'{self.dir}/cg.out*'))
        self.control('-d')
        self.control('-i', 'off')
        dumps = sorted(set(glob.glob(f'{self.dir}/cg.out*')) - before, key=os.path.getmtime)
        with open(dumps[-1]) as f:
            for line in f:
                if line.startswith(('totals:', 'summary:')):
                    return int(line.split()[1])
        raise RuntimeError('no totals in the callgrind dump')

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


BASE = 'redcoord:jobs:{bench-instructions}'
EVENTS = 'redcoord:events:jobs:bench-instructions'


def common(node):
    return [EVENTS, '604800000', node, EVENTS + ':wake']


def measure(server, rev, jobs, batch=48, nodes=4, want=16):
    conn = server.conn
    enqueue_src, claim_src = scripts_of(rev)
    enqueue = conn('SCRIPT', 'LOAD', enqueue_src)
    claim = conn('SCRIPT', 'LOAD', claim_src)
    conn('FLUSHALL')
    # the function's options as a node that runs it stores them (the defaults)
    conn('HSET', BASE + ':fn:noop', 'priority', '0', 'max_attempts', '3')
    workers = [Conn(server.port) for _ in range(nodes)]
    ended = [[] for _ in range(nodes)]
    rng = random.Random(1)

    def run():
        made = finished = 0
        while finished < jobs:
            if made < jobs:
                n = min(batch, jobs - made)
                args = common('bench-producer') + [n]
                for _ in range(n):
                    a = ['%032x' % rng.getrandbits(128), 'noop', '', '0', '', 'fail', '0', '1', '0']
                    args += [len(a)] + a
                conn('EVALSHA', enqueue, 1, BASE, *args)
                made += n
            for i, w in enumerate(workers):
                args = common(f'bench-node-{i + 1}') + [want, 30000, 1000, rng.random(),
                                                        len(ended[i])]
                for job_id, fence in ended[i]:
                    args += [job_id, fence, 'succeeded', '', '0']
                finished += len(ended[i])
                w.send('EVALSHA', claim, 1, BASE, *(args + ['noop']))
            for i, w in enumerate(workers):
                ended[i] = [(j[0], str(j[5])) for j in w.read()[3:]]
            if made >= jobs and not any(ended) and finished < jobs:
                raise RuntimeError(f'{jobs - finished} jobs were never claimed')

    per_job = server.count(run) / jobs
    conn('FLUSHALL')
    calls = 200
    empty_args = common('bench-node-1') + [want, 30000, 1000, 0.5, 0, 'noop']
    per_empty_call = server.count(
        lambda: [conn('EVALSHA', claim, 1, BASE, *empty_args) for _ in range(calls)]) / calls
    return round(per_job), round(per_empty_call)


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--jobs', type=int, default=2000)
    p.add_argument('--reference', help='git revision whose scripts are the same-run reference')
    o = p.parse_args()
    for tool in ('valgrind', 'callgrind_control', 'redis-server'):
        if shutil.which(tool) is None:
            sys.exit(f'jobs_instructions: {tool} is not installed')
    server = Server()
    try:
        per_job, per_call = measure(server, None, o.jobs)
        out = {'bench': 'jobs_server_instructions', 'jobs': o.jobs,
               'shape': 'enqueues of 48; 4 nodes claim up to 16 and end what they claimed',
               'instructions_per_job': per_job, 'instructions_per_empty_claim_call': per_call}
        if o.reference:
            ref_job, ref_call = measure(server, o.reference, o.jobs)
            out.update({'reference': f'the scripts of {o.reference}, this run',
                        'reference_instructions_per_job': ref_job,
                        'reference_instructions_per_empty_claim_call': ref_call,
                        'ratio': round(per_job / ref_job, 3)})
        print(json.dumps(out))
    finally:
        server.stop()


if __name__ == '__main__':
    main()

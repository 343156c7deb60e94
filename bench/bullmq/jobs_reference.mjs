// BullMQ, the same-run reference of bench/jobs' enqueue -> complete figure: the same shape
// (worker processes × concurrency, a no-op function, enqueues 64 in flight), against the
// same server, printed as one JSON line.
//   node jobs_reference.mjs <host> <port> <queue> <jobs> <workers> <concurrency>
// Worker processes are forked by this one and ended by it (and with it: they exit when their
// parent's IPC channel closes).
import { fork } from 'node:child_process';
import { Queue, Worker } from 'bullmq';

const [host, portText, queueName, jobsText, workersText, concurrencyText, role] =
    process.argv.slice(2);
const connection = { host, port: Number(portText) };

if (role === 'worker') {
    const worker = new Worker(queueName, async () => {}, {
        connection,
        concurrency: Number(concurrencyText),
    });
    process.on('disconnect', () => process.exit(0));
    process.on('message', async (m) => {
        if (m === 'stop') {
            await worker.close();
            process.exit(0);
        }
    });
    await worker.waitUntilReady();
    process.send('ready');
} else {
    const jobs = Number(jobsText);
    const queue = new Queue(queueName, { connection });
    const workers = [];
    for (let i = 0; i < Number(workersText); ++i) {
        const child = fork(process.argv[1], [...process.argv.slice(2, 8), 'worker']);
        await new Promise((resolve) => child.once('message', resolve));
        workers.push(child);
    }
    const start = process.hrtime.bigint();
    for (let sent = 0; sent < jobs;) {
        const batch = [];
        for (let i = 0; i < 64 && sent < jobs; ++i, ++sent) batch.push(queue.add('noop', { i: sent }));
        await Promise.all(batch);
    }
    for (;;) {
        const { completed } = await queue.getJobCounts('completed');
        if (completed >= jobs) break;
        await new Promise((resolve) => setTimeout(resolve, 5));
    }
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    console.log(JSON.stringify({ jobs, seconds, jobs_per_s: Math.round(jobs / seconds) }));
    for (const w of workers) w.send('stop');
    await queue.obliterate({ force: true });
    await queue.close();
    process.exit(0);
}

/**
 * The webhook benchmark's backend: an HTTP server that answers every POST
 * with 200 and counts them; prints its port, then the count every 100 ms.
 * Bounded: exits when stdin closes.
 */
import http from 'node:http';

let n = 0;
const server = http.createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    n++;
    res.writeHead(200, { 'content-length': '0' }).end();
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ ev: 'listening', port: (server.address() as { port: number }).port }) + '\n');
});
setInterval(() => process.stdout.write(JSON.stringify({ ev: 'count', n }) + '\n'), 100);
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();

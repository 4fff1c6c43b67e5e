/**
 * A fault-injecting TCP proxy for gRPC (HTTP/2 over cleartext) between a
 * client and one server. It understands HTTP/2 framing just enough to lose
 * the request message of chosen calls: the call's HEADERS frame passes (so
 * HPACK state stays in sync) but its DATA frames are discarded, so the server
 * never sees the request and the client's deadline expires — a request lost
 * in the network while the connection stays up. It can also blackhole a
 * connection entirely, cut every connection or refuse new ones.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';

const PREFACE_BYTES = 24;
const FRAME_HEADER_BYTES = 9;
const FRAME_DATA = 0x0;
const FRAME_HEADERS = 0x1;

export class TcpProxy {
  private readonly sockets = new Set<Socket>();
  private dropBudget = 0;
  private blackholed = false;
  private refusing = false;
  /** Calls whose request was dropped so far. */
  droppedCalls = 0;
  /** Connections accepted so far. */
  connections = 0;

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(targetHost: string, targetPort: number): Promise<TcpProxy> {
    let proxy: TcpProxy | undefined;
    const server = createServer((client) => proxy?.accept(client, targetHost, targetPort));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const addr = server.address();
    proxy = new TcpProxy(server, typeof addr === 'object' && addr ? addr.port : 0);
    return proxy;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Lose the request message of the next `n` calls started through the proxy. */
  dropNextRequests(n: number): void {
    this.dropBudget += n;
  }

  /** While on, every byte in either direction is discarded. */
  blackhole(on: boolean): void {
    this.blackholed = on;
  }

  /** While on, new connections are closed as soon as they are accepted, as if the server were down. */
  refuse(on: boolean): void {
    this.refusing = on;
  }

  /** Reset every open connection (clients reconnect). */
  cutAll(): void {
    for (const s of this.sockets) s.destroy();
  }

  async close(): Promise<void> {
    this.cutAll();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: Socket, host: string, port: number): void {
    if (this.refusing) {
      client.destroy();
      return;
    }
    this.connections++;
    const upstream = connect(port, host);
    this.sockets.add(client);
    this.sockets.add(upstream);
    const cleanup = () => {
      client.destroy();
      upstream.destroy();
      this.sockets.delete(client);
      this.sockets.delete(upstream);
    };
    client.on('error', cleanup);
    upstream.on('error', cleanup);
    client.on('close', cleanup);
    upstream.on('close', cleanup);

    upstream.on('data', (d: Buffer) => {
      if (!this.blackholed) client.write(d);
    });

    let buf: Buffer = Buffer.alloc(0);
    let prefaceLeft = PREFACE_BYTES;
    const droppedStreams = new Set<number>();
    const seenStreams = new Set<number>();
    client.on('data', (d: Buffer) => {
      if (this.blackholed) return;
      buf = buf.length === 0 ? d : Buffer.concat([buf, d]);
      if (prefaceLeft > 0) {
        const n = Math.min(prefaceLeft, buf.length);
        upstream.write(buf.subarray(0, n));
        buf = buf.subarray(n);
        prefaceLeft -= n;
      }
      while (buf.length >= FRAME_HEADER_BYTES) {
        const length = buf.readUIntBE(0, 3);
        const total = FRAME_HEADER_BYTES + length;
        if (buf.length < total) break;
        const type = buf[3] as number;
        const streamId = buf.readUInt32BE(5) & 0x7fffffff;
        const frame = buf.subarray(0, total);
        buf = buf.subarray(total);
        if (type === FRAME_HEADERS && streamId !== 0 && !seenStreams.has(streamId)) {
          seenStreams.add(streamId);
          if (this.dropBudget > 0) {
            this.dropBudget--;
            this.droppedCalls++;
            droppedStreams.add(streamId);
          }
        }
        if (type === FRAME_DATA && droppedStreams.has(streamId)) continue;
        upstream.write(frame);
      }
    });
  }
}

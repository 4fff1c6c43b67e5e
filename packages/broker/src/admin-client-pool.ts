import { type Client, credentials, type Metadata, type ServiceError } from '@grpc/grpc-js';
import { fromGrpcError, InvalidArgumentError } from '@sluice/common';
import { loadProto, MAX_GRPC_MESSAGE_BYTES } from '@sluice/proto';

type ServiceCtor = new (
  address: string,
  creds: ReturnType<typeof credentials.createInsecure>,
  options: object,
) => Client;

type UnaryMethod<Res> = (
  req: object,
  md: Metadata,
  opts: { deadline: number },
  cb: (err: ServiceError | null, res: Res) => void,
) => void;

/** AdminService clients to other brokers (for forwarding topic calls to their owner), one per address. */
export class AdminClientPool {
  private readonly clients = new Map<string, Client>();
  private readonly ctor: ServiceCtor;

  constructor(private readonly timeoutMs = 30_000) {
    const pkg = loadProto('admin.proto') as unknown as { sluice: { v1: { AdminService: ServiceCtor } } };
    this.ctor = pkg.sluice.v1.AdminService;
  }

  call<Res>(address: string, method: string, req: object, md: Metadata): Promise<Res> {
    let client = this.clients.get(address);
    if (!client) {
      client = new this.ctor(address, credentials.createInsecure(), {
        'grpc.max_receive_message_length': MAX_GRPC_MESSAGE_BYTES,
        'grpc.max_send_message_length': MAX_GRPC_MESSAGE_BYTES,
      });
      this.clients.set(address, client);
    }
    const fn = (client as unknown as Record<string, UnaryMethod<Res>>)[method];
    if (!fn) return Promise.reject(new InvalidArgumentError(`AdminService has no method ${method}`));
    return new Promise<Res>((resolve, reject) => {
      fn.call(
        client,
        req,
        md,
        { deadline: Date.now() + this.timeoutMs },
        (err: ServiceError | null, res: Res) => (err ? reject(fromGrpcError(err)) : resolve(res)),
      );
    });
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }
}

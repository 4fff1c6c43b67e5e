import * as grpc from '@grpc/grpc-js';
import { ClosedError } from '@sluice/common';
import type {
  AdminServiceClient,
  ConsumerServiceClient,
  LookupServiceClient,
  ProduceRequest,
  ProduceResponse__Output,
} from '@sluice/proto';
import { loadProto, MAX_GRPC_MESSAGE_BYTES } from '@sluice/proto';
import { type OutgoingProduceRequest, produceRequestSerializer } from './produce-codec.js';

type ClientCtor<T> = new (address: string, credentials: grpc.ChannelCredentials, options?: object) => T;

/** The Produce stub with the hand-written send serializer (see produce-codec.ts). */
export interface ProduceClient extends grpc.Client {
  Produce(
    options?: grpc.CallOptions,
  ): grpc.ClientDuplexStream<OutgoingProduceRequest, ProduceResponse__Output>;
}

interface SluiceV1 {
  LookupService: ClientCtor<LookupServiceClient>;
  ProducerService: ClientCtor<ProduceClient>;
  ConsumerService: ClientCtor<ConsumerServiceClient>;
  AdminService: ClientCtor<AdminServiceClient>;
}

type GeneratedCtor = grpc.ServiceClientConstructor;

/**
 * ProducerService with its Produce request serializer replaced: sends arrive
 * already serialized (one buffer per batch), opens go through protobufjs.
 */
function producerService(generated: GeneratedCtor): ClientCtor<ProduceClient> {
  const produce = generated.service.Produce as grpc.MethodDefinition<ProduceRequest, unknown>;
  const definition: grpc.ServiceDefinition = {
    ...generated.service,
    Produce: { ...produce, requestSerialize: produceRequestSerializer(produce.requestSerialize) },
  };
  return grpc.makeGenericClientConstructor(
    definition,
    generated.serviceName,
  ) as unknown as ClientCtor<ProduceClient>;
}

function services(): SluiceV1 {
  const broker = (loadProto('broker.proto').sluice as unknown as { v1: Record<string, GeneratedCtor> }).v1;
  const admin = (loadProto('admin.proto').sluice as unknown as { v1: Record<string, GeneratedCtor> }).v1;
  return {
    LookupService: broker.LookupService,
    ProducerService: producerService(broker.ProducerService!),
    ConsumerService: broker.ConsumerService,
    AdminService: admin.AdminService,
  } as unknown as SluiceV1;
}

/** The service stubs of one broker, sharing one channel (one HTTP/2 connection). */
export interface BrokerConnection {
  readonly address: string;
  readonly lookup: LookupServiceClient;
  readonly producer: ProduceClient;
  readonly consumer: ConsumerServiceClient;
  readonly admin: AdminServiceClient;
}

/**
 * One channel per broker address, shared by every producer, consumer and
 * admin call of a client. Channels reconnect by themselves; the pool only
 * closes them when the client closes.
 */
/** Receive window per stream and per connection (bounded: the broker stops at the window). */
const FLOW_CONTROL_WINDOW_BYTES = 8 * 1024 * 1024;

export class ConnectionPool {
  private readonly connections = new Map<string, BrokerConnection & { channel: grpc.Channel }>();
  private readonly stubs = services();
  private closed = false;

  constructor(private readonly channelOptions: grpc.ChannelOptions = {}) {}

  get(address: string): BrokerConnection {
    if (this.closed) throw new ClosedError('the Sluice client is closed; create a new SluiceClient');
    let conn = this.connections.get(address);
    if (!conn) {
      const options: grpc.ChannelOptions = {
        'grpc.max_receive_message_length': MAX_GRPC_MESSAGE_BYTES,
        'grpc.max_send_message_length': MAX_GRPC_MESSAGE_BYTES,
        // Reconnect quickly after a broker restart: grpc-js otherwise backs off up to 120 s.
        'grpc.initial_reconnect_backoff_ms': 100,
        'grpc.max_reconnect_backoff_ms': 2000,
        // HTTP/2 keeps 64 KiB per stream by default: a consumer catching up would
        // wait an event-loop round trip (WINDOW_UPDATE) per 64 KiB of deliveries.
        'grpc-node.flow_control_window': FLOW_CONTROL_WINDOW_BYTES,
        ...this.channelOptions,
      };
      const credentials = grpc.credentials.createInsecure();
      const channel = new grpc.Channel(address, credentials, options);
      const shared = { ...options, channelOverride: channel };
      conn = {
        address,
        channel,
        lookup: new this.stubs.LookupService(address, credentials, shared),
        producer: new this.stubs.ProducerService(address, credentials, shared),
        consumer: new this.stubs.ConsumerService(address, credentials, shared),
        admin: new this.stubs.AdminService(address, credentials, shared),
      };
      this.connections.set(address, conn);
    }
    return conn;
  }

  close(): void {
    this.closed = true;
    for (const conn of this.connections.values()) conn.channel.close();
    this.connections.clear();
  }
}

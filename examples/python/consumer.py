#!/usr/bin/python3
"""Consume messages of a Sluice subscription using only stubs generated from proto/.

    consumer.py --url localhost:6650 --topic orders --subscription billing --count 100 [--from earliest]

Subscribes (one stream per partition on partitioned topics), grants permits,
unpacks each delivered batch (skipping indexes the broker reports as already
acknowledged), prints one JSON line per message, acknowledges it, and exits
after --count messages. If a stream breaks it resubscribes; the broker
redelivers what was not acknowledged.
"""

import argparse
import base64
import json
import queue
import sys
import threading
import time

import grpc

from sluice_wire import (
    RETRIABLE,
    Channels,
    SluiceError,
    broker_pb2,
    broker_pb2_grpc,
    connect_to_owner,
    decode_batch,
    describe,
    format_id,
    partition_topic,
    partitions,
)

TYPES = {
    "exclusive": broker_pb2.SUBSCRIPTION_TYPE_EXCLUSIVE,
    "shared": broker_pb2.SUBSCRIPTION_TYPE_SHARED,
    "failover": broker_pb2.SUBSCRIPTION_TYPE_FAILOVER,
    "key_shared": broker_pb2.SUBSCRIPTION_TYPE_KEY_SHARED,
}
POSITIONS = {
    "earliest": broker_pb2.INITIAL_POSITION_EARLIEST,
    "latest": broker_pb2.INITIAL_POSITION_LATEST,
}
# Acks are sent in groups of at most this many ids (or whenever the consumer idles).
ACK_GROUP = 100


def log(text):
    sys.stderr.write(f"consumer: {text}\n")


def request_stream(requests):
    """Feeds a Consume call from a queue; None half-closes the stream."""
    while True:
        item = requests.get()
        if item is None:
            return
        yield item


class Received:
    def __init__(self, owner, generation, wire_id, line):
        self.owner = owner
        self.generation = generation
        self.wire_id = wire_id
        self.line = line


class PartitionConsumer(threading.Thread):
    """Owns the Consume stream of one topic (or partition); hands messages to `inbox`."""

    def __init__(self, channels, args, topic, partition, inbox):
        super().__init__(daemon=True, name=f"consume-{topic}")
        self.channels = channels
        self.args = args
        self.topic = topic
        self.partition = partition
        self.inbox = inbox
        self.consumer_name = ""
        self.generation = 0
        self.requests = None
        self.responses = None
        self.lock = threading.Lock()
        self.taken = 0  # messages the application took since the last flow
        self.acks = []
        self.stopping = threading.Event()

    # --- called from the main thread --------------------------------------

    def took(self, wire_id):
        """The application took one message: ack it (grouped) and refill permits in halves."""
        with self.lock:
            self.acks.append(wire_id)
            self.taken += 1
            if len(self.acks) >= ACK_GROUP:
                self._flush_acks()
            if self.taken >= max(1, self.args.receiver_queue // 2):
                self._send(broker_pb2.ConsumeRequest(flow=broker_pb2.Flow(permits=self.taken)))
                self.taken = 0

    def flush(self):
        with self.lock:
            self._flush_acks()

    def close(self):
        """Send pending acks, half-close the stream and wait for the broker to end it."""
        self.stopping.set()
        with self.lock:
            self._flush_acks()
            if self.requests is not None:
                self.requests.put(None)
        self.join(timeout=5)
        if self.is_alive() and self.responses is not None:
            self.responses.cancel()
            self.join(timeout=5)

    # --- stream -----------------------------------------------------------

    def _send(self, req):
        if self.requests is not None:
            self.requests.put(req)

    def _flush_acks(self):
        if self.acks and self.requests is not None:
            self.requests.put(broker_pb2.ConsumeRequest(ack=broker_pb2.Ack(message_ids=self.acks)))
        self.acks = []

    def _open(self, address):
        requests = queue.Queue()
        requests.put(
            broker_pb2.ConsumeRequest(
                subscribe=broker_pb2.Subscribe(
                    topic=self.topic,
                    subscription=self.args.subscription,
                    type=TYPES[self.args.type],
                    consumer_name=self.consumer_name,
                    initial_position=POSITIONS[self.args.initial_position],
                )
            )
        )
        stub = broker_pb2_grpc.ConsumerServiceStub(self.channels.get(address))
        responses = stub.Consume(request_stream(requests))
        try:
            first = next(responses)
        except BaseException:
            requests.put(None)
            raise
        if first.WhichOneof("response") != "subscribed":
            responses.cancel()
            requests.put(None)
            raise SluiceError(f"broker {address} answered Subscribe with {first.WhichOneof('response')}")
        self.consumer_name = first.subscribed.consumer_name or self.consumer_name
        with self.lock:
            # Messages buffered from an older stream are dropped (the broker
            # redelivers them), and so are their pending acks and permits.
            self.generation += 1
            self.acks = []
            self.taken = 0
            self.requests, self.responses = requests, responses
            requests.put(broker_pb2.ConsumeRequest(flow=broker_pb2.Flow(permits=self.args.receiver_queue)))
        log(f"subscribed {self.consumer_name} to {self.args.subscription} on {self.topic} at {address}")
        return responses

    def _connect(self):
        deadline = time.monotonic() + self.args.timeout
        return connect_to_owner(self.channels, self.args.url, self.topic, self._open, deadline, log)

    def run(self):
        try:
            responses = self._connect()
            while True:
                try:
                    for res in responses:
                        self._on_response(res)
                    lost = "the broker ended the stream"
                except grpc.RpcError as err:
                    if self.stopping.is_set():
                        return
                    if err.code() not in RETRIABLE:
                        raise SluiceError(f"consume stream on {self.topic} failed: {describe(err)}") from None
                    lost = describe(err)
                if self.stopping.is_set():
                    return
                log(f"consume stream on {self.topic} lost ({lost}); resubscribing")
                with self.lock:
                    self.requests.put(None)
                    self.requests = None
                responses = self._connect()
        except SluiceError as err:
            self.inbox.put(err)

    def _on_response(self, res):
        kind = res.WhichOneof("response")
        if kind == "deliveries":
            for d in res.deliveries.deliveries:
                self._on_delivery(d)
        elif kind == "error":
            e = res.error
            log(f"broker reported {e.error_code}: {e.message}")

    def _on_delivery(self, d):
        first = d.message_id
        try:
            messages = decode_batch(d.batch)
        except SluiceError as err:
            # Never hand out a batch we cannot read; it stays unacknowledged on the broker.
            log(f"skipping entry {first.ledger_id}:{first.entry_id}: {err}")
            self._grant(d.batch.header.count)
            return
        acked = set(d.acked_indexes)
        skipped = 0
        for i, m in enumerate(messages):
            index = first.batch_index + i
            if index in acked:
                skipped += 1
                continue
            wire_id = broker_pb2.MessageId(
                ledger_id=first.ledger_id, entry_id=first.entry_id, batch_index=index, partition=self.partition
            )
            line = {
                "id": format_id(first.ledger_id, first.entry_id, index, self.partition),
                "key": m.key,
                "properties": dict(m.properties),
                "publishTime": d.publish_time,
                "eventTime": m.event_time,
                "redeliveryCount": d.redelivery_count,
            }
            try:
                line["value"] = m.value.decode("utf-8")
            except UnicodeDecodeError:
                line["value"] = base64.b64encode(m.value).decode("ascii")
                line["encoding"] = "base64"
            self.inbox.put(Received(self, self.generation, wire_id, line))
        if skipped:
            self._grant(skipped)

    def _grant(self, n):
        if n > 0:
            with self.lock:
                self._send(broker_pb2.ConsumeRequest(flow=broker_pb2.Flow(permits=n)))


def main():
    ap = argparse.ArgumentParser(description="Consume messages from Sluice with generated gRPC stubs.")
    ap.add_argument("--url", default="localhost:6650", help="any broker, host:port")
    ap.add_argument("--topic", required=True)
    ap.add_argument("--subscription", "-s", required=True)
    ap.add_argument("--count", "-n", type=int, required=True, help="exit after this many messages")
    ap.add_argument("--type", choices=sorted(TYPES), default="exclusive")
    ap.add_argument("--from", dest="initial_position", choices=sorted(POSITIONS), default="latest",
                    help="where a new subscription starts")
    ap.add_argument("--receiver-queue", type=int, default=1000, help="permits per partition")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the messages")
    args = ap.parse_args()
    if args.count < 1 or args.receiver_queue < 1:
        ap.error("--count and --receiver-queue must be at least 1")

    channels = Channels()
    consumers = []
    try:
        try:
            n_partitions = partitions(channels, args.url, args.topic, args.timeout)
        except grpc.RpcError as err:
            raise SluiceError(f"metadata of {args.topic} from {args.url}: {describe(err)}") from None
        inbox = queue.Queue()  # bounded by the permits granted to each stream
        targets = [(args.topic, -1)] if n_partitions == 0 else [
            (partition_topic(args.topic, p), p) for p in range(n_partitions)
        ]
        for topic, p in targets:
            c = PartitionConsumer(channels, args, topic, p, inbox)
            consumers.append(c)
            c.start()
        deadline = time.monotonic() + args.timeout
        received = 0
        while received < args.count:
            try:
                item = inbox.get_nowait()
            except queue.Empty:
                for c in consumers:
                    c.flush()  # idle: send grouped acks now
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SluiceError(f"received {received} of {args.count} messages within {args.timeout:g}s") from None
                try:
                    item = inbox.get(timeout=remaining)
                except queue.Empty:
                    continue
            if isinstance(item, SluiceError):
                raise item
            if item.generation != item.owner.generation:
                continue  # from a stream that broke; the broker redelivers it
            print(json.dumps(item.line))
            sys.stdout.flush()
            item.owner.took(item.wire_id)
            received += 1
    except SluiceError as err:
        sys.stderr.write(f"error: {err}\n")
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        for c in consumers:
            c.close()
        channels.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

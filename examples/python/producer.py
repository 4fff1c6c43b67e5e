#!/usr/bin/python3
"""Publish messages to a Sluice topic using only stubs generated from proto/.

    producer.py --url localhost:6650 --topic orders -n 100 [--key K]

Looks the topic up (following FAILED_PRECONDITION redirects), opens a
producer, sends the messages in batches numbered with sequence ids, waits for
every receipt and prints one JSON line per message: its index, message id
("ledgerId:entryId:batchIndex[:partition]"), key and value. If the stream
breaks, the producer reopens under the same name and resends every batch
without a receipt; the broker's deduplication stores each batch once.
"""

import argparse
import json
import queue
import sys
import time

import grpc

from sluice_wire import (
    CODECS,
    RETRIABLE,
    Channels,
    SluiceError,
    batch_pb2,
    broker_pb2,
    broker_pb2_grpc,
    connect_to_owner,
    describe,
    encode_batch,
    format_id,
    murmur3_32,
    partition_topic,
    partitions,
)

# Batches written but not yet acknowledged; bounds what a broken stream must resend.
MAX_INFLIGHT_BATCHES = 64
# SendError codes that mean "this broker can no longer take the topic": reconnect.
RECONNECT_ERROR_CODES = {"NOT_OWNER", "FENCED", "UNAVAILABLE", "CLOSED"}


def log(text):
    sys.stderr.write(f"producer: {text}\n")


def request_stream(requests):
    """Feeds a Produce call from a queue; None half-closes the stream."""
    while True:
        item = requests.get()
        if item is None:
            return
        yield item


class Batch:
    def __init__(self, indexes, messages):
        self.indexes = indexes  # positions of the messages in the input
        self.messages = messages
        self.sequence_id = -1
        self.wire = None


class PartitionProducer:
    """Sends the batches of one topic (or one partition) and collects their ids."""

    def __init__(self, channels, args, topic, partition):
        self.channels = channels
        self.args = args
        self.topic = topic
        self.partition = partition
        self.producer_name = args.producer_name
        self.codec = CODECS[args.compression]
        self.next_sequence_id = None

    def _open(self, address):
        requests = queue.Queue()
        requests.put(
            broker_pb2.ProduceRequest(
                open=broker_pb2.OpenProducer(topic=self.topic, producer_name=self.producer_name)
            )
        )
        stub = broker_pb2_grpc.ProducerServiceStub(self.channels.get(address))
        responses = stub.Produce(request_stream(requests), timeout=self.args.timeout)
        try:
            first = next(responses)
        except BaseException:
            requests.put(None)
            raise
        if first.WhichOneof("response") != "opened":
            responses.cancel()
            requests.put(None)
            raise SluiceError(f"broker {address} answered OpenProducer with {first.WhichOneof('response')}")
        opened = first.opened
        self.producer_name = opened.producer_name or self.producer_name
        # Batches numbered on an earlier stream keep their ids (the broker
        # recognises the ones it stored); new ones continue above what the
        # topic holds for this producer name.
        floor = opened.last_sequence_id + 1
        self.next_sequence_id = floor if self.next_sequence_id is None else max(self.next_sequence_id, floor)
        log(f"opened producer {self.producer_name} on {self.topic} at {address}")
        return requests, responses

    def _connect(self):
        deadline = time.monotonic() + self.args.timeout
        return connect_to_owner(self.channels, self.args.url, self.topic, self._open, deadline, log)

    def _on_receipt(self, r, inflight, ids):
        b = inflight.pop(r.sequence_id, None)
        if b is None:
            return  # late answer to a batch resent on a newer stream
        mid = r.message_id
        for i, index in enumerate(b.indexes):
            ids[index] = format_id(mid.ledger_id, mid.entry_id, mid.batch_index + i, self.partition)

    def send_all(self, batches, ids):
        """Send `batches`, filling ids[index] from each receipt."""
        pending = list(batches)  # not yet written on the current stream
        inflight = {}  # sequence id -> Batch, written and awaiting a receipt
        requests, responses = self._connect()
        while pending or inflight:
            while pending and len(inflight) < MAX_INFLIGHT_BATCHES:
                b = pending.pop(0)
                if b.wire is None:
                    b.sequence_id = self.next_sequence_id
                    self.next_sequence_id += len(b.messages)
                    b.wire = encode_batch(b.messages, b.sequence_id, self.codec)
                inflight[b.sequence_id] = b
                requests.put(broker_pb2.ProduceRequest(send=broker_pb2.SendBatch(batch=b.wire)))
            lost = None
            try:
                res = next(responses)
            except grpc.RpcError as err:
                if err.code() not in RETRIABLE:
                    requests.put(None)
                    raise SluiceError(f"produce stream on {self.topic} failed: {describe(err)}") from None
                lost = describe(err)
            except StopIteration:
                lost = "the broker ended the stream"
            if lost is None:
                kind = res.WhichOneof("response")
                if kind == "receipt":
                    self._on_receipt(res.receipt, inflight, ids)
                elif kind == "error":
                    e = res.error
                    if e.error_code not in RECONNECT_ERROR_CODES:
                        requests.put(None)
                        responses.cancel()
                        raise SluiceError(f"batch {e.sequence_id} refused: {e.error_code}: {e.message}")
                    responses.cancel()
                    lost = f"{e.error_code}: {e.message}"
            if lost is not None:
                requests.put(None)
                log(f"produce stream on {self.topic} lost ({lost}); reconnecting")
                pending = sorted(inflight.values(), key=lambda x: x.sequence_id) + pending
                inflight.clear()
                requests, responses = self._connect()
        requests.put(None)
        try:
            for _ in responses:
                pass
        except grpc.RpcError:
            pass  # every receipt is in; how the broker ends the stream no longer matters


def parse_properties(pairs):
    props = {}
    for p in pairs:
        if "=" not in p:
            raise SluiceError(f"property '{p}' is malformed; use -p name=value")
        k, v = p.split("=", 1)
        props[k] = v
    return props


def main():
    ap = argparse.ArgumentParser(description="Publish messages to Sluice with generated gRPC stubs.")
    ap.add_argument("--url", default="localhost:6650", help="any broker, host:port")
    ap.add_argument("--topic", required=True)
    ap.add_argument("-n", "--count", type=int, default=10, help="messages to send")
    ap.add_argument("--key", default="", help="routing key of every message")
    ap.add_argument("--prefix", default="message", help="values are PREFIX-0, PREFIX-1, ...")
    ap.add_argument("-p", "--property", action="append", default=[], help="name=value, repeatable")
    ap.add_argument("--batch-size", type=int, default=10, help="messages per batch")
    ap.add_argument("--compression", choices=sorted(CODECS), default="none")
    ap.add_argument("--producer-name", default="", help="reuse to resume deduplication")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds for the whole run")
    args = ap.parse_args()
    if args.count < 1 or args.batch_size < 1:
        ap.error("-n and --batch-size must be at least 1")

    channels = Channels()
    try:
        props = parse_properties(args.property)
        try:
            n_partitions = partitions(channels, args.url, args.topic, args.timeout)
        except grpc.RpcError as err:
            raise SluiceError(f"metadata of {args.topic} from {args.url}: {describe(err)}") from None
        now = int(time.time() * 1000)
        by_partition = {}
        for i in range(args.count):
            if n_partitions == 0:
                p = -1
            elif args.key:
                p = murmur3_32(args.key) % n_partitions
            else:
                p = i % n_partitions
            msg = batch_pb2.BatchMessage(
                key=args.key, value=f"{args.prefix}-{i}".encode(), properties=props, send_time=now
            )
            by_partition.setdefault(p, []).append((i, msg))
        ids = [None] * args.count
        for p, items in sorted(by_partition.items()):
            batches = [
                Batch([i for i, _ in items[s : s + args.batch_size]], [m for _, m in items[s : s + args.batch_size]])
                for s in range(0, len(items), args.batch_size)
            ]
            topic = args.topic if p < 0 else partition_topic(args.topic, p)
            PartitionProducer(channels, args, topic, p).send_all(batches, ids)
        for i in range(args.count):
            print(json.dumps({"index": i, "id": ids[i], "key": args.key, "value": f"{args.prefix}-{i}"}))
        sys.stdout.flush()
    except SluiceError as err:
        sys.stderr.write(f"error: {err}\n")
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        channels.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

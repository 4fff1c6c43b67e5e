"""Shared pieces of the Sluice example clients: stubs, channels, lookup with
redirects, the batch codec, Murmur3 routing and message ids.

Everything here follows the comments in proto/sluice/v1/{broker,batch}.proto;
nothing comes from a Sluice SDK. The generated stubs are looked up in
$SLUICE_STUBS, else in ./gen next to this file (see generate.sh).
"""

import gzip
import os
import sys
import time
import zlib

import grpc

_STUBS = os.environ.get("SLUICE_STUBS") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen")
if not os.path.isfile(os.path.join(_STUBS, "sluice", "v1", "broker_pb2.py")):
    sys.stderr.write(
        f"error: generated stubs not found in {_STUBS}; run ./generate.sh (or set SLUICE_STUBS)\n"
    )
    sys.exit(2)
sys.path.insert(0, _STUBS)

from sluice.v1 import batch_pb2, broker_pb2, broker_pb2_grpc  # noqa: E402

# A batch may be as large as the namespace's max message size (5 MiB by
# default) and one gRPC message up to 16 MiB: gRPC's default 4 MiB receive
# limit would refuse large deliveries.
MAX_GRPC_MESSAGE_BYTES = 16 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_BYTES),
]

OWNER_TRAILER = "sluice-owner"
ERROR_CODE_TRAILER = "sluice-error-code"

# Failures a client rides out by looking the topic up again: the topic moved,
# the broker went away, or ownership is being handed over.
RETRIABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
}


class SluiceError(Exception):
    """A failure the example cannot recover from; printed as one line."""


class Channels:
    """One channel per broker address, closed together."""

    def __init__(self):
        self._channels = {}

    def get(self, address):
        ch = self._channels.get(address)
        if ch is None:
            ch = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
            self._channels[address] = ch
        return ch

    def close(self):
        for ch in self._channels.values():
            ch.close()
        self._channels.clear()


def trailer(err, key):
    """Value of a trailing metadata key of a failed call, or None."""
    md = err.trailing_metadata() if hasattr(err, "trailing_metadata") else None
    for k, v in md or ():
        if k == key:
            return v
    return None


def describe(err):
    code = trailer(err, ERROR_CODE_TRAILER) or err.code().name
    return f"{code}: {err.details()}"


def lookup(channels, service_url, topic, timeout):
    """Address of the broker that owns `topic` (LookupService.Lookup)."""
    stub = broker_pb2_grpc.LookupServiceStub(channels.get(service_url))
    res = stub.Lookup(broker_pb2.LookupRequest(topic=topic), timeout=timeout)
    # A broker that advertises no address means "dial me as you reached me".
    return res.broker_address or service_url


def partitions(channels, service_url, topic, timeout):
    stub = broker_pb2_grpc.LookupServiceStub(channels.get(service_url))
    return stub.GetTopicMetadata(broker_pb2.GetTopicMetadataRequest(topic=topic), timeout=timeout).partitions


def connect_to_owner(channels, service_url, topic, attempt, deadline, log):
    """Run `attempt(address)` against the owner of `topic`.

    Looks the topic up, tries the owner, and on FAILED_PRECONDITION dials the
    broker named in the "sluice-owner" trailer next (an empty trailer means
    ownership is moving: back off and look up again). Other transient
    failures back off and look up again until `deadline` (time.monotonic()).
    """
    hint = None
    delay = 0.05
    while True:
        address = None
        try:
            address = hint or lookup(channels, service_url, topic, max(0.1, deadline - time.monotonic()))
            hint = None
            return attempt(address)
        except grpc.RpcError as err:
            if err.code() not in RETRIABLE or time.monotonic() + delay > deadline:
                raise SluiceError(f"{topic} on {address or service_url}: {describe(err)}") from None
            owner = trailer(err, OWNER_TRAILER) if err.code() == grpc.StatusCode.FAILED_PRECONDITION else None
            if owner:
                log(f"{address} does not own {topic}; redirected to {owner}")
                hint = owner
                continue
            log(f"{topic} on {address or service_url}: {describe(err)}; retrying in {delay:.2f}s")
            time.sleep(delay)
            delay = min(delay * 2, 3.0)


# --- batch codec (batch.proto) ---------------------------------------------

CODECS = {
    "none": batch_pb2.COMPRESSION_CODEC_UNSPECIFIED,
    "gzip": batch_pb2.COMPRESSION_CODEC_GZIP,
    "deflate": batch_pb2.COMPRESSION_CODEC_DEFLATE,
}


def _compress(codec, data):
    if codec == batch_pb2.COMPRESSION_CODEC_UNSPECIFIED:
        return data
    if codec == batch_pb2.COMPRESSION_CODEC_GZIP:
        return gzip.compress(data, compresslevel=1)
    if codec == batch_pb2.COMPRESSION_CODEC_DEFLATE:
        c = zlib.compressobj(1, zlib.DEFLATED, -15)  # raw deflate (RFC 1951): no zlib header
        return c.compress(data) + c.flush()
    raise SluiceError(f"codec {codec} is not supported here; use none, gzip or deflate")


def _decompress(codec, data, size):
    if codec == batch_pb2.COMPRESSION_CODEC_UNSPECIFIED:
        return data
    if codec == batch_pb2.COMPRESSION_CODEC_GZIP:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif codec == batch_pb2.COMPRESSION_CODEC_DEFLATE:
        d = zlib.decompressobj(-15)
    else:
        name = batch_pb2.CompressionCodec.Name(codec) if codec in batch_pb2.CompressionCodec.values() else codec
        raise SluiceError(f"batch codec {name} is not supported by this example; produce with none, gzip or deflate")
    # Never inflate past the size the header declares (a corrupt or hostile batch).
    out = d.decompress(data, max(size, 1))
    if d.unconsumed_tail or len(out) != size:
        raise SluiceError(f"batch payload inflates to a size other than its declared {size} bytes")
    return out


def encode_batch(messages, first_sequence_id, codec):
    """MessageBatch for `messages` (BatchMessage list) numbered from `first_sequence_id`."""
    raw = batch_pb2.BatchMessages(messages=messages).SerializeToString()
    keys = {m.key for m in messages}
    shared_key = messages[0].key if len(keys) == 1 else ""
    header = batch_pb2.BatchHeader(
        count=len(messages),
        first_sequence_id=first_sequence_id,
        codec=codec,
        uncompressed_size=len(raw),
        key=shared_key,
    )
    return batch_pb2.MessageBatch(header=header, payload=_compress(codec, raw))


def decode_batch(batch):
    """The BatchMessage list of a delivered MessageBatch, in send order."""
    h = batch.header
    raw = _decompress(h.codec, batch.payload, h.uncompressed_size)
    msgs = batch_pb2.BatchMessages.FromString(raw).messages
    if len(msgs) != h.count:
        raise SluiceError(f"delivered batch holds {len(msgs)} messages but its header says {h.count}")
    return list(msgs)


# --- routing and ids ---------------------------------------------------------


def murmur3_32(data, seed=0):
    """Murmur3 x86 32-bit; Sluice hashes the UTF-8 bytes of a key with seed 0."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    c1, c2, m = 0xCC9E2D51, 0x1B873593, 0xFFFFFFFF
    h = seed & m
    n = len(data) // 4 * 4
    for i in range(0, n, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * c1) & m
        k = ((k << 15) | (k >> 17)) & m
        k = (k * c2) & m
        h ^= k
        h = ((h << 13) | (h >> 19)) & m
        h = (h * 5 + 0xE6546B64) & m
    tail = data[n:]
    k = 0
    if len(tail) == 3:
        k ^= tail[2] << 16
    if len(tail) >= 2:
        k ^= tail[1] << 8
    if len(tail) >= 1:
        k ^= tail[0]
        k = (k * c1) & m
        k = ((k << 15) | (k >> 17)) & m
        k = (k * c2) & m
        h ^= k
    h ^= len(data)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & m
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & m
    h ^= h >> 16
    return h


def partition_topic(topic, index):
    return f"{topic}-partition-{index}"


def format_id(ledger_id, entry_id, batch_index, partition=-1):
    """"ledgerId:entryId:batchIndex", with ":partition" on partitioned topics."""
    base = f"{ledger_id}:{entry_id}:{batch_index}"
    return f"{base}:{partition}" if partition >= 0 else base

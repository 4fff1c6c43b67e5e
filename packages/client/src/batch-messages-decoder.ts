import { CorruptDataError } from '@sluice/common';
import type { BatchEntry } from './batch-codec.js';

const EMPTY: Buffer = Buffer.alloc(0);

function corrupt(what: string): CorruptDataError {
  return new CorruptDataError(`delivered batch does not parse as BatchMessages: ${what}`);
}

/**
 * A protobuf varint as a number (exact up to 2^53, like protobufjs's
 * Long.toNumber); 10-byte negatives are read as two's complement.
 */
class Cursor {
  o: number;
  constructor(
    readonly buf: Buffer,
    start: number,
    readonly end: number,
  ) {
    this.o = start;
  }

  varint(): number {
    const buf = this.buf;
    const start = this.o;
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.o >= this.end) throw corrupt('truncated varint');
      const b = buf[this.o++]!;
      if (i === 9) {
        if (b > 1) throw corrupt('varint longer than 64 bits');
        // Bit 63 set: a negative int64 as ten bytes of two's complement; doubles cannot hold 2^64 - n.
        return this.bigVarint(start);
      }
      result += (b & 0x7f) * scale;
      if (b < 0x80) return result;
      scale *= 128;
    }
    throw corrupt('varint longer than 10 bytes');
  }

  private bigVarint(start: number): number {
    let v = 0n;
    for (let i = 0; i < 10; i++) v |= BigInt(this.buf[start + i]! & 0x7f) << BigInt(7 * i);
    return Number(BigInt.asIntN(64, v));
  }

  /** End offset of a length-delimited field whose length is next. */
  span(): number {
    const len = this.varint();
    const end = this.o + len;
    if (end > this.end) throw corrupt(`field of ${len} bytes runs past its message`);
    return end;
  }

  skip(wireType: number): void {
    switch (wireType) {
      case 0:
        this.varint();
        return;
      case 1:
        this.o += 8;
        break;
      case 2:
        this.o = this.span();
        return;
      case 5:
        this.o += 4;
        break;
      default:
        throw corrupt(`unknown wire type ${wireType}`);
    }
    if (this.o > this.end) throw corrupt('fixed-size field runs past its message');
  }
}

function decodeMessage(c: Cursor, end: number): BatchEntry {
  const buf = c.buf;
  let key = '';
  let value: Buffer = EMPTY;
  const properties: Record<string, string> = {};
  let eventTime = 0;
  let sendTime = 0;
  while (c.o < end) {
    const tag = c.varint();
    switch (tag) {
      case 0x0a: {
        const e = c.span();
        key = buf.toString('utf8', c.o, e);
        c.o = e;
        break;
      }
      case 0x12: {
        const e = c.span();
        // A view into the batch, as protobufjs gives: no copy per message.
        value = buf.subarray(c.o, e);
        c.o = e;
        break;
      }
      case 0x1a: {
        const e = c.span();
        let k = '';
        let v = '';
        while (c.o < e) {
          const t = c.varint();
          if (t === 0x0a || t === 0x12) {
            const se = c.span();
            const s = buf.toString('utf8', c.o, se);
            c.o = se;
            if (t === 0x0a) k = s;
            else v = s;
          } else c.skip(t & 7);
        }
        if (c.o !== e) throw corrupt('map entry overruns its length');
        properties[k] = v;
        break;
      }
      case 0x20:
        eventTime = c.varint();
        break;
      case 0x28:
        sendTime = c.varint();
        break;
      default:
        c.skip(tag & 7);
    }
  }
  if (c.o !== end) throw corrupt('message overruns its length');
  return { key, value, properties, eventTime, sendTime };
}

/**
 * Parse `BatchMessages` by hand straight into BatchEntry objects. protobufjs
 * built a message object per message that was then copied into a BatchEntry
 * (with a second properties object): two short-lived objects per message on
 * a consumer's hot path.
 */
export function decodeBatchMessages(buf: Buffer): BatchEntry[] {
  const out: BatchEntry[] = [];
  const c = new Cursor(buf, 0, buf.length);
  while (c.o < buf.length) {
    const tag = c.varint();
    if (tag === 0x0a) {
      const end = c.span();
      out.push(decodeMessage(c, end));
    } else {
      c.skip(tag & 7);
    }
  }
  return out;
}

/**
 * Walk one message without building anything, with every check
 * `decodeMessage` makes; returns the length of its value.
 */
function checkMessage(c: Cursor, end: number): number {
  let valueBytes = 0;
  while (c.o < end) {
    const tag = c.varint();
    if (tag === 0x12) {
      const e = c.span();
      valueBytes = e - c.o;
      c.o = e;
    } else if (tag === 0x1a) {
      const e = c.span();
      while (c.o < e) c.skip(c.varint() & 7);
      if (c.o !== e) throw corrupt('map entry overruns its length');
    } else {
      c.skip(tag & 7);
    }
  }
  if (c.o !== end) throw corrupt('message overruns its length');
  return valueBytes;
}

/** Where each message of a BatchMessages buffer starts, found by `indexBatchMessages`. */
export interface BatchMessagesIndex {
  /** Offset of each message's field tag, in send order. */
  offsets: number[];
  /** Sum of the messages' value lengths. */
  valueBytes: number;
}

/**
 * Check that `BatchMessages` parses, and note where each message starts, so
 * that its messages can be decoded one at a time later (`decodeBatchMessageAt`)
 * without any of them being a bad surprise then. A consumer's receiver queue
 * holds a batch this way: one array of numbers instead of several objects per
 * message, which a queue thousands of messages deep kept alive across young
 * collections, and which then got copied and promoted.
 */
export function indexBatchMessages(buf: Buffer): BatchMessagesIndex {
  const offsets: number[] = [];
  let valueBytes = 0;
  const c = new Cursor(buf, 0, buf.length);
  while (c.o < buf.length) {
    const at = c.o;
    const tag = c.varint();
    if (tag === 0x0a) {
      const end = c.span();
      offsets.push(at);
      valueBytes += checkMessage(c, end);
    } else {
      c.skip(tag & 7);
    }
  }
  return { offsets, valueBytes };
}

/** The message whose field tag is at `offset` (an offset `indexBatchMessages` gave). */
export function decodeBatchMessageAt(buf: Buffer, offset: number): BatchEntry {
  const c = new Cursor(buf, offset, buf.length);
  if (c.varint() !== 0x0a) throw corrupt(`no message at offset ${offset}`);
  const end = c.span();
  return decodeMessage(c, end);
}

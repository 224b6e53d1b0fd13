// Seeded mutations of DER CSRs for the differential test: byte-level damage (bit flips,
// truncations, inserted and deleted bytes) and structural edits on a lenient parse
// tree (length and tag tampering, inserted, dropped and duplicated elements, RDNs
// duplicated or merged, string types swapped, OIDs left unterminated), re-encoded and,
// for edits inside the signed part, optionally re-signed so that they reach the policy.
import { sign, type KeyObject } from 'node:crypto';

/** mulberry32: a small seeded generator, so every run makes the same mutations. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Node {
  tag: number;
  /** primitive contents */
  content?: Buffer;
  children?: Node[];
  /** extra octets of length: 0 is DER's minimal form */
  padLength?: number;
  /** set when the length octets are to be written wrong by this much */
  lengthDelta?: number;
}

/** A lenient parse: constructed tags (bit 0x20) are descended into when their contents parse. */
function parse(buf: Buffer): Node[] | undefined {
  const out: Node[] = [];
  let off = 0;
  while (off < buf.length) {
    if (off + 2 > buf.length) return undefined;
    const tag = buf[off];
    let len = buf[off + 1];
    let pos = off + 2;
    if (len & 0x80) {
      const n = len & 0x7f;
      if (n === 0 || n > 3 || pos + n > buf.length) return undefined;
      len = 0;
      for (let i = 0; i < n; i++) len = len * 256 + buf[pos + i];
      pos += n;
    }
    if (pos + len > buf.length) return undefined;
    const body = buf.subarray(pos, pos + len);
    const kids = tag & 0x20 ? parse(body) : undefined;
    out.push(kids ? { tag, children: kids } : { tag, content: Buffer.from(body) });
    off = pos + len;
  }
  return out;
}

function lengthOctets(len: number, pad: number): number[] {
  if (len < 0x80 && pad === 0) return [len];
  const bytes: number[] = [];
  for (let n = len; n > 0; n = Math.floor(n / 256)) bytes.unshift(n & 0xff);
  if (bytes.length === 0) bytes.push(0);
  for (let i = 0; i < pad; i++) bytes.unshift(0);
  return [0x80 | bytes.length, ...bytes];
}

function encode(n: Node): Buffer {
  const body = n.children ? Buffer.concat(n.children.map(encode)) : (n.content ?? Buffer.alloc(0));
  const len = Math.max(0, body.length + (n.lengthDelta ?? 0));
  return Buffer.concat([Buffer.from([n.tag, ...lengthOctets(len, n.padLength ?? 0)]), body]);
}

function allNodes(n: Node, path: number[] = [], out: { node: Node; path: number[] }[] = []): { node: Node; path: number[] }[] {
  out.push({ node: n, path });
  n.children?.forEach((c, i) => allNodes(c, [...path, i], out));
  return out;
}

const UNIVERSAL = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x0c, 0x13, 0x14, 0x16, 0x1e, 0x30, 0x31, 0xa0, 0xa3];
const STRINGS = [0x0c, 0x13, 0x14, 0x16, 0x1e, 0x1c];

export interface Mutation {
  der: Buffer;
  kind: string;
}

/**
 * One mutation of `der` (a CSR signed by `key`). Edits inside the
 * CertificationRequestInfo are re-signed half of the time, so that they test what
 * the parser and the policy refuse rather than only the signature.
 */
export function mutate(der: Buffer, key: KeyObject, hash: string, random: () => number): Mutation {
  const pick = <T>(xs: T[]): T => xs[Math.floor(random() * xs.length)];
  const at = (n: number): number => Math.floor(random() * n);
  const bytes = Buffer.from(der);
  const kind = pick(['flip', 'flip', 'truncate', 'insert', 'delete', 'boundary', 'tree', 'tree', 'tree', 'tree', 'tree', 'tree']);
  switch (kind) {
    case 'flip': {
      for (let i = 0, n = 1 + at(3); i < n; i++) bytes[at(bytes.length)] ^= 1 << at(8);
      return { der: bytes, kind };
    }
    case 'truncate':
      return { der: bytes.subarray(0, at(bytes.length)), kind };
    case 'insert': {
      const p = at(bytes.length + 1);
      return { der: Buffer.concat([bytes.subarray(0, p), Buffer.from([at(256)]), bytes.subarray(p)]), kind };
    }
    case 'delete': {
      const p = at(bytes.length);
      return { der: Buffer.concat([bytes.subarray(0, p), bytes.subarray(p + 1)]), kind };
    }
    case 'boundary':
      bytes[at(bytes.length)] = pick([0x00, 0x7f, 0x80, 0x81, 0xff]);
      return { der: bytes, kind };
  }
  const [root] = parse(der) ?? [];
  if (!root?.children) return { der: bytes, kind: 'identity' };
  const nodes = allNodes(root);
  const target = pick(nodes);
  const constructed = nodes.filter((x) => x.node.children && x.node.children.length > 0);
  const edit = pick([
    'length+1',
    'length-1',
    'length-long',
    'tag',
    'dup-child',
    'drop-child',
    'swap-children',
    'insert-child',
    'dup-rdn',
    'merge-rdns',
    'string-type',
    'oid-unterminated',
    'oid-nonminimal',
    'integer-pad',
    'boolean-false',
  ]);
  const info = root.children[0];
  const subject = info?.children?.[1];
  switch (edit) {
    case 'length+1':
      target.node.lengthDelta = 1;
      break;
    case 'length-1':
      target.node.lengthDelta = -1;
      break;
    case 'length-long':
      target.node.padLength = 1;
      break;
    case 'tag':
      target.node.tag = pick(UNIVERSAL);
      break;
    case 'dup-child': {
      const c = pick(constructed).node.children!;
      const i = at(c.length);
      c.splice(i, 0, structuredClone(c[i]));
      break;
    }
    case 'drop-child': {
      const c = pick(constructed).node.children!;
      c.splice(at(c.length), 1);
      break;
    }
    case 'swap-children': {
      const c = pick(constructed).node.children!;
      const i = at(c.length);
      const j = at(c.length);
      [c[i], c[j]] = [c[j], c[i]];
      break;
    }
    case 'insert-child': {
      const c = pick(constructed).node.children!;
      c.splice(
        at(c.length + 1),
        0,
        pick([
          { tag: 0x02, content: Buffer.from([1]) },
          { tag: 0x05, content: Buffer.alloc(0) },
          { tag: 0x04, content: Buffer.from('x') },
        ]),
      );
      break;
    }
    case 'dup-rdn':
      if (subject?.children?.length) subject.children.splice(at(subject.children.length), 0, structuredClone(pick(subject.children)));
      break;
    case 'merge-rdns':
      if (subject?.children && subject.children.length > 1) {
        const [a, b] = subject.children.splice(0, 2);
        subject.children.unshift({ tag: 0x31, children: [...(a.children ?? []), ...(b.children ?? [])] });
      }
      break;
    case 'string-type': {
      const strs = nodes.filter((x) => STRINGS.includes(x.node.tag));
      if (strs.length) pick(strs).node.tag = pick(STRINGS);
      break;
    }
    case 'oid-unterminated': {
      const oids = nodes.filter((x) => x.node.tag === 0x06 && x.node.content?.length);
      if (oids.length) {
        const o = pick(oids).node.content!;
        o[o.length - 1] |= 0x80;
      }
      break;
    }
    case 'oid-nonminimal': {
      const oids = nodes.filter((x) => x.node.tag === 0x06 && x.node.content?.length);
      if (oids.length) {
        const o = pick(oids).node;
        const p = 1 + at(Math.max(1, o.content!.length - 1));
        o.content = Buffer.concat([o.content!.subarray(0, p), Buffer.from([0x80]), o.content!.subarray(p)]);
      }
      break;
    }
    case 'integer-pad': {
      const ints = nodes.filter((x) => x.node.tag === 0x02 && x.node.content);
      if (ints.length) {
        const n = pick(ints).node;
        n.content = Buffer.concat([Buffer.from([0]), n.content!]);
      }
      break;
    }
    case 'boolean-false': {
      const bools = nodes.filter((x) => x.node.tag === 0x01);
      if (bools.length) pick(bools).node.content = Buffer.from([0]);
      break;
    }
  }
  // an edit inside the signed part: re-sign it half of the time, so the policy sees it
  if (info && random() < 0.5 && root.children[2]?.tag === 0x03) {
    const infoDer = encode(info);
    const sig = sign(hash, infoDer, { key, dsaEncoding: 'der' });
    root.children[2] = { tag: 0x03, content: Buffer.concat([Buffer.from([0]), sig]) };
    return { der: encode(root), kind: `${edit}+resigned` };
  }
  return { der: encode(root), kind: edit };
}

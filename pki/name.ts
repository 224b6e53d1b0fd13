// X.501 Names: build them with UTF8String values, read their attributes.
import { children, decodeOid, decodeOne, DerError, expectTag, oid, seq, set, TAG, utf8, type Tlv } from './der.js';
import { ATTRIBUTE_NAMES } from './oids.js';

export interface NameAttribute {
  oid: string;
  value: string;
}

/** Encodes a Name, one attribute per RDN, in the given order, all UTF8String. */
export function encodeName(attrs: NameAttribute[]): Buffer {
  return seq(...attrs.map((a) => set(seq(oid(a.oid), utf8(a.value)))));
}

const STRING_TAGS = new Set<number>([TAG.UTF8_STRING, TAG.PRINTABLE_STRING, TAG.IA5_STRING, 0x14 /* T61 */]);

/** Reads every attribute of a Name in order. */
export function decodeName(name: Tlv): NameAttribute[] {
  expectTag(name, TAG.SEQUENCE, 'Name');
  const out: NameAttribute[] = [];
  for (const rdn of children(name)) {
    expectTag(rdn, TAG.SET, 'RelativeDistinguishedName');
    for (const atv of children(rdn)) {
      const [type, value] = children(expectTag(atv, TAG.SEQUENCE, 'AttributeTypeAndValue'));
      expectTag(type, TAG.OID, 'attribute type');
      if (!value || !STRING_TAGS.has(value.tag)) throw new DerError('unsupported attribute value type');
      out.push({ oid: decodeOid(type.body), value: Buffer.from(value.body).toString(value.tag === TAG.UTF8_STRING ? 'utf8' : 'latin1') });
    }
  }
  return out;
}

export function decodeNameDer(der: Uint8Array): NameAttribute[] {
  return decodeName(decodeOne(der));
}

/** First value of an attribute, or undefined. */
export function nameValue(attrs: NameAttribute[], attrOid: string): string | undefined {
  return attrs.find((a) => a.oid === attrOid)?.value;
}

/** OpenSSL-like one-line rendering: `CN=x, OU=y`. */
export function formatName(attrs: NameAttribute[]): string {
  return attrs.map((a) => `${ATTRIBUTE_NAMES[a.oid] ?? a.oid}=${a.value}`).join(', ');
}

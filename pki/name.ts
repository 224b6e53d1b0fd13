// X.501 Names: build them with UTF8String values, read their attributes.
import { children, decodeOid, decodeOne, DerError, expectTag, fields, oid, seq, set, TAG, utf8, type Tlv } from './der.js';
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

const PRINTABLE = /^[A-Za-z0-9 '()+,\-./:=?]*$/;
const utf8Strict = new TextDecoder('utf-8', { fatal: true });

/**
 * Reads a subject that Kiln will copy into a certificate, strictly: every RDN holds
 * exactly one attribute, and every value is a UTF8String of valid UTF-8 or a
 * PrintableString of its own alphabet. Anything that could read two ways is refused.
 */
export function decodeSubject(name: Tlv): NameAttribute[] {
  expectTag(name, TAG.SEQUENCE, 'Name');
  const out: NameAttribute[] = [];
  for (const rdn of children(name)) {
    const atvs = children(expectTag(rdn, TAG.SET, 'RelativeDistinguishedName'));
    if (atvs.length !== 1) throw new DerError(`subject has a relative distinguished name with ${atvs.length} attributes (must be 1)`);
    const [type, value] = fields(expectTag(atvs[0], TAG.SEQUENCE, 'AttributeTypeAndValue'), 'AttributeTypeAndValue', 2);
    const attrOid = decodeOid(expectTag(type, TAG.OID, 'attribute type').body);
    const label = ATTRIBUTE_NAMES[attrOid] ?? attrOid;
    let text: string;
    if (value.tag === TAG.UTF8_STRING) {
      try {
        text = utf8Strict.decode(value.body);
      } catch {
        throw new DerError(`subject ${label} is not valid UTF-8`);
      }
    } else if (value.tag === TAG.PRINTABLE_STRING) {
      text = Buffer.from(value.body).toString('latin1');
      if (!PRINTABLE.test(text)) throw new DerError(`subject ${label} has characters a PrintableString cannot hold`);
    } else throw new DerError(`subject ${label} must be a UTF8String or PrintableString`);
    out.push({ oid: attrOid, value: text });
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

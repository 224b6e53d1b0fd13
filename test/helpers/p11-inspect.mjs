// Prints the objects of a PKCS#11 token as JSON: node p11-inspect.mjs MODULE TOKEN PIN
import pkcs11js from 'pkcs11js';

const [module, label, pin] = process.argv.slice(2);
const p = new pkcs11js.PKCS11();
p.load(module);
p.C_Initialize();
try {
  const slot = p.C_GetSlotList(true).find((s) => p.C_GetTokenInfo(s).label.replace(/\0/g, '').trim() === label);
  if (!slot) throw new Error(`no token ${label}`);
  const s = p.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION);
  p.C_Login(s, pkcs11js.CKU_USER, pin);
  p.C_FindObjectsInit(s, []);
  const handles = p.C_FindObjects(s, 1000);
  p.C_FindObjectsFinal(s);
  const classes = { [pkcs11js.CKO_PRIVATE_KEY]: 'private', [pkcs11js.CKO_PUBLIC_KEY]: 'public', [pkcs11js.CKO_CERTIFICATE]: 'certificate' };
  const get = (h, type) => p.C_GetAttributeValue(s, h, [{ type }])[0].value;
  const out = handles.map((h) => {
    const cls = classes[get(h, pkcs11js.CKA_CLASS).readUInt32LE(0)] ?? 'other';
    const o = { class: cls, label: get(h, pkcs11js.CKA_LABEL).toString(), id: get(h, pkcs11js.CKA_ID).toString('hex') };
    if (cls === 'private') {
      o.sensitive = get(h, pkcs11js.CKA_SENSITIVE)[0] === 1;
      o.extractable = get(h, pkcs11js.CKA_EXTRACTABLE)[0] === 1;
    }
    if (cls === 'certificate') o.value = get(h, pkcs11js.CKA_VALUE).toString('base64');
    return o;
  });
  process.stdout.write(JSON.stringify(out));
} finally {
  p.C_Finalize();
}

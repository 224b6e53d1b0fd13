// From a PKCS#11 URI to a Signer: the one entry point the server and kilnctl use.
import { KilnError } from '../errors.js';
import type { Signer } from '../signer.js';
import { createPkcs11Signer, findObjects, generateEcKeyPair, type Pkcs11SignerOptions } from './keys.js';
import { openToken, type Token } from './token.js';
import { parsePkcs11Uri, pinOf, type Pkcs11Uri } from './uri.js';

export type ReadFile = (path: string) => string;

async function openUriToken(uri: Pkcs11Uri, readFile: ReadFile): Promise<Token> {
  const token = await openToken({ modulePath: uri.modulePath!, token: uri.token, serial: uri.serial, slotId: uri.slotId });
  try {
    token.login(pinOf(uri, readFile));
  } catch (err) {
    token.close();
    throw err;
  }
  return token;
}

const keyRef = (uri: Pkcs11Uri): { label?: string; id?: Buffer } => ({ label: uri.object, id: uri.id });

function signerOver(token: Token, uri: Pkcs11Uri, opts: Pkcs11SignerOptions): Signer {
  try {
    return createPkcs11Signer(token, keyRef(uri), {
      ...opts,
      ownsToken: true,
      describe: { token: token.label, object: uri.object ?? uri.id?.toString('hex') ?? '' },
    });
  } catch (err) {
    token.close();
    throw err;
  }
}

/** Opens the key a URI names, logged in and ready to sign. */
export async function openPkcs11Signer(uriText: string, readFile: ReadFile, opts: Pkcs11SignerOptions = {}): Promise<Signer> {
  const uri = parsePkcs11Uri(uriText);
  return signerOver(await openUriToken(uri, readFile), uri, opts);
}

/** Generates a new EC P-256 key pair where the URI points (refusing to replace one) and returns its signer. */
export async function generatePkcs11Key(uriText: string, readFile: ReadFile): Promise<Signer> {
  const uri = parsePkcs11Uri(uriText);
  const token = await openUriToken(uri, readFile);
  try {
    if (findObjects(token, token.lib.CKO_PRIVATE_KEY, keyRef(uri)).length) {
      throw new KilnError(
        'conflict',
        `token "${token.label}" already holds a private key ${uri.object ? `labelled "${uri.object}"` : 'with that id'}; refusing to replace it`,
      );
    }
    generateEcKeyPair(token, { ...keyRef(uri), curve: 'P-256' });
  } catch (err) {
    token.close();
    throw err;
  }
  return signerOver(token, uri, { sessions: 1 });
}

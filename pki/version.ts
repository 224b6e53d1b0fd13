// The package version, for every program's --version and the server's start-up line.
// It lives in pki/ because that is the one folder every program (the server, kilnctl,
// the device client) imports. A literal, so the device bundle carries no package.json;
// version.test.ts keeps it equal to package.json's.
export const VERSION = '0.1.0';

SUMMARY = "Kiln device-register (opt-in): registers a device with a factory registration server"
DESCRIPTION = "Option-compatible replacement for lmp-device-register, one bundled JavaScript \
module run by Node.js. Opt-in: it brings nodejs into the image (see docs/yocto.md for the \
footprint); the default first-boot registration drives the stock C++ lmp-device-register."
HOMEPAGE = "https://github.com/kiln/kiln"
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

# device-register.mjs is dist/device-register.js, copied here by `npm run build`. The
# .mjs name makes it an ES module for every Node.js, without a package.json or syntax
# detection.
SRC_URI = "file://device-register.mjs file://device-register.sh"

S = "${WORKDIR}"

inherit allarch

do_configure[noexec] = "1"
do_compile[noexec] = "1"

do_install() {
    install -d ${D}${libdir}/kiln ${D}${bindir}
    install -m 0644 ${WORKDIR}/device-register.mjs ${D}${libdir}/kiln/device-register.mjs
    install -m 0755 ${WORKDIR}/device-register.sh ${D}${bindir}/device-register
}

FILES:${PN} = "${libdir}/kiln/device-register.mjs ${bindir}/device-register"
# HSM mode (-m) needs the pkcs11js addon, which no layer packages: on an image, use the
# stock client's PKCS#11 support (KILN_CLIENT_FLAVOR = "lmp", the default).
RDEPENDS:${PN} = "nodejs"

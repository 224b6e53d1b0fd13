SUMMARY = "Kiln device-register: registers a device with a factory registration server"
DESCRIPTION = "Option-compatible replacement for lmp-device-register, one bundled JavaScript file run by Node.js."
HOMEPAGE = "https://github.com/kiln/kiln"
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

# device-register.js is dist/device-register.js, copied here by `npm run build`.
SRC_URI = "file://device-register.js file://device-register.sh"

UNPACKDIR ??= "${WORKDIR}"
S = "${UNPACKDIR}"

inherit allarch

do_configure[noexec] = "1"
do_compile[noexec] = "1"

do_install() {
    install -d ${D}${libdir}/kiln ${D}${bindir}
    install -m 0644 ${UNPACKDIR}/device-register.js ${D}${libdir}/kiln/device-register.js
    install -m 0755 ${UNPACKDIR}/device-register.sh ${D}${bindir}/device-register
}

FILES:${PN} = "${libdir}/kiln/device-register.js ${bindir}/device-register"
# HSM mode (-m) additionally needs the pkcs11js addon next to the script.
RDEPENDS:${PN} = "nodejs"

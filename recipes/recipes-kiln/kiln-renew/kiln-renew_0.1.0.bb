SUMMARY = "Kiln certificate renewal: EST simplereenroll with openssl and curl, on a timer"
DESCRIPTION = "Renews the device certificate in /var/sota at two thirds of its lifetime (with \
a random delay, so that a fleet does not renew at once); works with either registration client."
HOMEPAGE = "https://github.com/kiln/kiln"
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

SRC_URI = "file://kiln-renew file://kiln-renew.service file://kiln-renew.timer"

S = "${WORKDIR}"

inherit allarch systemd

SYSTEMD_SERVICE:${PN} = "kiln-renew.timer"
SYSTEMD_AUTO_ENABLE:${PN} = "enable"

do_configure[noexec] = "1"
do_compile[noexec] = "1"

do_install() {
    install -d ${D}${bindir} ${D}${systemd_system_unitdir} ${D}${sysconfdir}/kiln/post-register.d
    install -m 0755 ${WORKDIR}/kiln-renew ${D}${bindir}/kiln-renew
    install -m 0644 ${WORKDIR}/kiln-renew.service ${D}${systemd_system_unitdir}/kiln-renew.service
    install -m 0644 ${WORKDIR}/kiln-renew.timer ${D}${systemd_system_unitdir}/kiln-renew.timer
}

FILES:${PN} += "${systemd_system_unitdir}/kiln-renew.service ${systemd_system_unitdir}/kiln-renew.timer ${sysconfdir}/kiln/post-register.d"
RDEPENDS:${PN} = "openssl-bin curl"
# a device key in an HSM: OpenSSL's PKCS#11 engine and pkcs11-tool
RRECOMMENDS:${PN} = "libp11 opensc"

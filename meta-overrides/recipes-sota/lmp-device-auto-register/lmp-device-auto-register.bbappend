# Replace the stock first-boot script with Kiln's, which fixes its defects:
# `$(<file)` under dash, unexported variables, and the failed re-run after a
# reboot before aktualizr-lite created sql.db. It drives the stock
# lmp-device-register (CLIENT_FLAVOR=lmp) for both detached modes: the device's
# side is the same whether or not the Kiln server also creates devices upstream.
# (meta-lmp's recipe is lmp-device-auto-register.bb, with no version: so is this name.)
FILESEXTRAPATHS:prepend := "${THISDIR}/files:"
SRC_URI += "file://device-auto-register file://device-register.conf"

KILN_DEVICE_API ??= "http://kiln.factory.lan:8000/sign"

do_install:append() {
    install -m 0755 ${WORKDIR}/device-auto-register ${D}${bindir}/lmp-device-auto-register
    install -d ${D}${sysconfdir}/kiln
    install -m 0644 ${WORKDIR}/device-register.conf ${D}${sysconfdir}/kiln/device-register.conf
    sed -i 's#^DEVICE_API=.*#DEVICE_API=${KILN_DEVICE_API}#' ${D}${sysconfdir}/kiln/device-register.conf
}

FILES:${PN} += "${sysconfdir}/kiln"

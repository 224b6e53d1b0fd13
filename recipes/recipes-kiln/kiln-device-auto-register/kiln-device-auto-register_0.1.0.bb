SUMMARY = "Kiln first-boot registration: registers the device once, from configuration the image ships"
HOMEPAGE = "https://github.com/kiln/kiln"
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

# Configuration, from local.conf or a bbappend (docs/yocto.md).
KILN_DEVICE_API ??= ""
KILN_PRODUCTION ??= "0"
KILN_DEVICE_FACTORY ??= ""
KILN_DEVICE_GROUP ??= ""
KILN_START_DAEMON ??= "1"
KILN_APPS ??= ""
KILN_TAG ??= ""
KILN_USE_HOSTNAME ??= ""
# The HSM's PKCS#11 module; each device generates its own PINs at first boot (or a
# factory station writes HSM_PIN/HSM_SOPIN into /etc/sota/hsm): no PIN is baked in.
KILN_HSM_MODULE ??= ""
# The stock C++ lmp-device-register by default (small images, PKCS#11 built in);
# "device-register"/"kiln" for Kiln's Node.js client (brings nodejs).
KILN_CLIENT ??= "lmp-device-register"
KILN_CLIENT_FLAVOR ??= "lmp"

# lmp-device-register-token: the default here is the dummy "na" a detached server accepts;
# a factory supplies its own through FILESEXTRAPATHS in a bbappend.
SRC_URI = "file://device-auto-register file://device-auto-register.service file://lmp-device-register-token"

S = "${WORKDIR}"

inherit allarch systemd

SYSTEMD_SERVICE:${PN} = "device-auto-register.service"
SYSTEMD_AUTO_ENABLE:${PN} = "enable"

do_configure[noexec] = "1"
do_compile[noexec] = "1"

# Said when this recipe builds, not on every parse of every build that includes the layer.
python kiln_check_device_api() {
    if not d.getVar('KILN_DEVICE_API'):
        bb.warn('kiln-device-auto-register: KILN_DEVICE_API is not set; devices will not know their registration server')
}
do_install[prefuncs] += "kiln_check_device_api"

do_install() {
    install -d ${D}${bindir} ${D}${systemd_system_unitdir} ${D}${sysconfdir}/kiln ${D}${sysconfdir}/sota
    install -m 0755 ${WORKDIR}/device-auto-register ${D}${bindir}/device-auto-register
    install -m 0644 ${WORKDIR}/device-auto-register.service ${D}${systemd_system_unitdir}/device-auto-register.service
    install -m 0600 ${WORKDIR}/lmp-device-register-token ${D}${sysconfdir}/lmp-device-register-token

    conf=${D}${sysconfdir}/kiln/device-register.conf
    printf 'DEVICE_API=%s\n' "${KILN_DEVICE_API}" > $conf
    printf 'PRODUCTION=%s\n' "${KILN_PRODUCTION}" >> $conf
    printf 'DEVICE_FACTORY=%s\n' "${KILN_DEVICE_FACTORY}" >> $conf
    printf 'DEVICE_GROUP=%s\n' "${KILN_DEVICE_GROUP}" >> $conf
    printf 'START_DAEMON=%s\n' "${KILN_START_DAEMON}" >> $conf
    printf 'APPS=%s\n' "${KILN_APPS}" >> $conf
    printf 'USE_HOSTNAME=%s\n' "${KILN_USE_HOSTNAME}" >> $conf
    printf 'CLIENT=%s\n' "${KILN_CLIENT}" >> $conf
    printf 'CLIENT_FLAVOR=%s\n' "${KILN_CLIENT_FLAVOR}" >> $conf
    chmod 0644 $conf

    if [ -n "${KILN_TAG}" ]; then
        printf '%s\n' "${KILN_TAG}" > ${D}${sysconfdir}/sota/tag
    fi
    if [ -n "${KILN_HSM_MODULE}" ]; then
        printf 'HSM_MODULE=%s\n' "${KILN_HSM_MODULE}" > ${D}${sysconfdir}/sota/hsm
        chmod 0644 ${D}${sysconfdir}/sota/hsm
    fi
}

FILES:${PN} += "${systemd_system_unitdir}/device-auto-register.service ${sysconfdir}/kiln ${sysconfdir}/sota ${sysconfdir}/lmp-device-register-token"
CONFFILES:${PN} = "${sysconfdir}/kiln/device-register.conf ${sysconfdir}/lmp-device-register-token"
RDEPENDS:${PN} = "${@'kiln-device-register' if d.getVar('KILN_CLIENT_FLAVOR') == 'kiln' else 'lmp-device-register'}"
# meta-lmp's first-boot registration installs the same token file and also runs at first
# boot: one or the other
RCONFLICTS:${PN} = "lmp-device-auto-register"

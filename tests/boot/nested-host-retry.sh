# shellcheck shell=bash
# Sourced by run-boot-test and run-vfio-boot-test: whether a nested test host
# that failed earns another boot. QEMU TCG's emulated SVM is not perfect (see
# run-boot-test), so any host failure gets one retry, said loudly
# (scripts/test lists every retry). A second retry only when the failed host
# had an emulated CPU that stopped taking interrupts (halted with IF=1 and
# vectors pending: scripts/nested-host-inspect marks it), which no job can
# cause; it froze one test's host on both boots in whole-suite runs, before
# the jobs' output moved off the 16550 (scripts/nested-host).
#
#   nested_host_another_boot BOOTS LOG   BOOTS: boots so far; LOG: the last one's output
nested_host_another_boot() {
    local boots=$1 log=$2
    ((boots < 2)) && return 0
    ((boots < 3)) && grep -q STOPPED-TAKING-INTERRUPTS "$log"
}

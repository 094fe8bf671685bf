/* Keeps one idle KVM VM open for the nested test host's whole life.
 *
 * Under QEMU TCG, the host deadlocks now and then when one CPU patches
 * kernel text while another runs it or waits for it in an IPI. KVM patches
 * text in two places this VM takes away:
 *
 * - Linux 6.1 turns virtualization on on every CPU when the first VM is
 *   created and off when the last one goes, each time with an IPI to every
 *   CPU (seen as a soft lockup in kvm_destroy_vm, and as a host that hangs
 *   in KVM_CREATE_VM). With this VM held, the jobs' VMs never take the host
 *   from zero VMs to one or back.
 * - The local APIC's static keys (apic_hw_disabled, apic_sw_disabled) count
 *   vCPUs whose APIC is off; every 0 <-> 1 change rewrites each branch on
 *   them, the 1 -> 0 change a second after a guest enables its APIC, from
 *   a workqueue, while the other CPU is delivering interrupts through those
 *   branches (seen as both CPUs stuck 27 s in __apic_accept_irq, one of
 *   them in kvm-pit). This VM's one vCPU keeps its APIC disabled, in
 *   hardware and in software, so both counts stay above zero and the jobs'
 *   guests only move them between 1 and more: no patching.
 *
 * Runs while the host has one CPU online (maxcpus=1), so its own patching
 * races nobody. Returns once the VM exists; a child keeps it until the host
 * powers off. */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define MSR_IA32_APICBASE 0x1b
#define APIC_DEFAULT_BASE 0xfee00000ull

/* The vCPU's APIC off in hardware (the enable bit of IA32_APIC_BASE clear);
 * it is off in software from reset (SPIV never written). */
static int disable_apic(int vcpu) {
    struct {
        struct kvm_msrs header;
        struct kvm_msr_entry entry;
    } msrs;
    memset(&msrs, 0, sizeof msrs);
    msrs.header.nmsrs = 1;
    msrs.entry.index = MSR_IA32_APICBASE;
    msrs.entry.data = APIC_DEFAULT_BASE; /* enable bit (11) clear */
    return ioctl(vcpu, KVM_SET_MSRS, &msrs) == 1 ? 0 : -1;
}

int main(void) {
    int kvm = open("/dev/kvm", O_RDWR);
    if (kvm < 0) {
        perror("kvm-hold: /dev/kvm");
        return 1;
    }
    int vm = ioctl(kvm, KVM_CREATE_VM, 0);
    if (vm < 0) {
        perror("kvm-hold: KVM_CREATE_VM");
        return 1;
    }
    /* The VM alone already does the first job; the vCPU is the second, so
     * a failure here is said but not fatal. */
    int vcpu = -1;
    if (ioctl(vm, KVM_CREATE_IRQCHIP, 0) < 0)
        perror("kvm-hold: KVM_CREATE_IRQCHIP (APIC static keys will flip)");
    else if ((vcpu = ioctl(vm, KVM_CREATE_VCPU, 0)) < 0)
        perror("kvm-hold: KVM_CREATE_VCPU (APIC static keys will flip)");
    else if (disable_apic(vcpu) < 0)
        perror("kvm-hold: KVM_SET_MSRS IA32_APIC_BASE (apic_hw_disabled will flip)");
    pid_t child = fork();
    if (child < 0) {
        perror("kvm-hold: fork");
        return 1;
    }
    if (child > 0) return 0; /* the child holds the VM */
    setsid();
    for (;;) pause();
}

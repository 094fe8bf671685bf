/* Keeps one idle KVM VM open for the nested test host's whole life.
 *
 * Linux 6.1 turns virtualization on on every CPU when the first VM is
 * created and off when the last one goes, each time with an IPI to every
 * CPU (on_each_cpu). Under QEMU TCG those IPIs can deadlock the host
 * against a CPU patching kernel text (seen as a soft lockup in
 * kvm_destroy_vm, and as a host that hangs in KVM_CREATE_VM): with this VM
 * held, the jobs' VMs never take the host from zero VMs to one or back.
 *
 * Returns once the VM exists; a child keeps it until the host powers off. */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <unistd.h>

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
    pid_t child = fork();
    if (child < 0) {
        perror("kvm-hold: fork");
        return 1;
    }
    if (child > 0) return 0; /* the child holds the VM */
    setsid();
    for (;;) pause();
}

// SPDX-License-Identifier: GPL-2.0
/*
 * minikvm_provoke: TEST-ONLY kernel module. Never load it anywhere but a
 * throw-away minikvm test guest.
 *
 * Debian's cloud kernel is built without LKDTM, so this module offers the
 * two LKDTM crash types minikvm's --fail-on tests need, in the same way:
 * writing a name to the debugfs file /sys/kernel/debug/minikvm-provoke
 *
 *   WARNING    WARN(1, ...): a "WARNING: CPU: ..." report; the kernel and
 *              the writer carry on (as LKDTM's WARNING_MESSAGE)
 *   EXCEPTION  a write through a NULL pointer: "BUG: kernel NULL pointer
 *              dereference" + "Oops: ..."; the kernel kills only the
 *              writing process (as LKDTM's EXCEPTION)
 *   HUNG_TASK  the writer sleeps 5 s uninterruptibly (D state), so with
 *              kernel.hung_task_timeout_secs=1 the hung-task detector
 *              reports it ("INFO: task ... blocked for more than"); then
 *              the write returns (LKDTM's HUNG_TASK never does)
 *
 * Anything else is refused with EINVAL. guest-images/fetch-cloud-kernel.sh
 * builds it against the cloud kernel's headers and puts it into the cloud
 * initramfs outside modules.order, so only the guest /init's warn and oops
 * tests load it.
 */
/* Before the includes, which define a default. */
#define pr_fmt(fmt) "minikvm-provoke: " fmt

#include <linux/debugfs.h>
#include <linux/delay.h>
#include <linux/fs.h>
#include <linux/module.h>
#include <linux/string.h>
#include <linux/uaccess.h>

static struct dentry *provoke_file;

/* noinline: the oops's RIP is in a function of its own, as in LKDTM. */
static noinline void provoke_exception(void)
{
	/* volatile: the compiler must emit the store. */
	*((volatile int *)0) = 0;
}

static ssize_t provoke_write(struct file *file, const char __user *ubuf,
			     size_t count, loff_t *ppos)
{
	char buf[16];

	if (count >= sizeof(buf))
		return -EINVAL;
	if (copy_from_user(buf, ubuf, count))
		return -EFAULT;
	buf[count] = '\0';

	/* sysfs_streq: a trailing newline (echo) is allowed. */
	if (sysfs_streq(buf, "WARNING")) {
		pr_info("Performing WARNING\n");
		WARN(1, "minikvm-provoke: WARNING requested\n");
	} else if (sysfs_streq(buf, "EXCEPTION")) {
		pr_info("Performing EXCEPTION\n");
		provoke_exception();
	} else if (sysfs_streq(buf, "HUNG_TASK")) {
		pr_info("Performing HUNG_TASK: 5 s in D state\n");
		/* msleep sleeps TASK_UNINTERRUPTIBLE: what the detector looks for. */
		msleep(5000);
	} else {
		return -EINVAL;
	}
	return count;
}

static const struct file_operations provoke_fops = {
	.owner = THIS_MODULE,
	.open = simple_open,
	.write = provoke_write,
	.llseek = no_llseek,
};

static int __init provoke_init(void)
{
	provoke_file = debugfs_create_file("minikvm-provoke", 0200, NULL, NULL,
					   &provoke_fops);
	if (IS_ERR(provoke_file))
		return PTR_ERR(provoke_file);
	pr_info("TEST-ONLY module loaded: write WARNING, EXCEPTION or HUNG_TASK to /sys/kernel/debug/minikvm-provoke\n");
	return 0;
}

static void __exit provoke_exit(void)
{
	debugfs_remove(provoke_file);
}

module_init(provoke_init);
module_exit(provoke_exit);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("TEST-ONLY: a kernel WARNING, oops or hung task on demand for minikvm's boot tests");

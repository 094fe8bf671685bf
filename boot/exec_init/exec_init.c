/*
 * /init of `minikvm --exec CMD`: the guest half of running one command on
 * the host's own files inside a VM.
 *
 * minikvm builds an initramfs around this static binary and its config file
 * /minikvm/exec (format: exec_config.h). The init mounts the host's root,
 * exported by minikvm over virtio-9p (9P2000.L), read-only under a tmpfs
 * overlay, runs the command with the caller's uid, groups, cwd, environment
 * and terminal size, and reports the command's exit status through I/O port
 * 0xf5 (devices/exec_status.h), where minikvm exits with exactly that status.
 * A failure before the command runs reports 125, the convention of env(1)
 * and chroot(1) for "the wrapper failed".
 *
 * Static (glibc's libc.a), and nothing but the kernel: the initramfs holds
 * only this file and its config.
 */

#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "boot/exec_init/exec_config.h"

#define CONFIG_PATH "/minikvm/exec"
#define STATUS_PORT 0xf5
#define TERMINAL_READY_PORT 0xf6 /* devices/exec_status.h: kTerminalReady */
#define SETUP_FAILED 125

/*
 * 9p mount options. msize: 512000 is the largest message 6.1's virtio
 * transport takes (PAGE_SIZE * (VIRTQUEUE_NUM - 3)); asking for more only
 * makes the kernel clamp it and say so on the console.
 *
 * Read-only mounts use cache=loose: the guest cannot change these files, so
 * caching pages, attributes and lookups is safe from the guest's side, and it
 * makes exec-heavy commands (shells, compilers) fast. A file the host changes
 * during the run may be seen stale; overlayfs forbids changing its lower layer
 * underneath it anyway.
 *
 * Writable mounts use cache=mmap: reads and writes go to the host at once
 * (no stale data when the host or another share sees the same file), yet
 * shared writable mmap works, which cache=none refuses (some programs, such
 * as databases, need it). loose would keep writes in the guest's page cache.
 */
#define P9_COMMON "trans=virtio,version=9p2000.L,msize=512000"
#define P9_READ_ONLY P9_COMMON ",cache=loose"
#define P9_WRITABLE P9_COMMON ",cache=mmap"

/*
 * The terminal of the command. PID 1 opens it, makes it its controlling
 * terminal and keeps it open, so that the command's exit is not the session
 * leader's: that exit would hang the terminal up and discard output still
 * queued in the driver (the command's last lines, or its error message).
 * PID 1 waits for that output to leave (tcdrain) before it reports.
 */
static int terminal = -1;

/* The command's stderr, a second console (minikvm's stderr), or -1: the
 * terminal. */
static int error_terminal = -1;

/* One line on the console: "minikvm-init: <message>". */
static void say(const char *format, ...) __attribute__((format(printf, 1, 2)));

static void say(const char *format, ...)
{
	char line[512];
	int length = snprintf(line, sizeof(line), "minikvm-init: ");
	va_list args;

	va_start(args, format);
	length += vsnprintf(line + length, sizeof(line) - (size_t)length, format, args);
	va_end(args);
	if (length > (int)sizeof(line) - 2)
		length = (int)sizeof(line) - 2;
	line[length++] = '\n';
	/* One write, so the line is not interleaved with kernel messages. */
	if (write(STDERR_FILENO, line, (size_t)length) < 0) {
		/* No console: nowhere else to say it. */
	}
}

/*
 * Reports the status to minikvm and stops. PID 1 must never return (the
 * kernel panics), so this is how every path of the init ends.
 */
static void __attribute__((noreturn)) report_status(int status)
{
	/* What the command and the init wrote reaches minikvm first... */
	if (terminal >= 0)
		tcdrain(terminal);
	if (error_terminal >= 0)
		tcdrain(error_terminal);
	tcdrain(STDERR_FILENO);
	sync(); /* ...and so do a writable share's dirty pages */
	if (ioperm(STATUS_PORT, 1, 1) == 0)
		outb((unsigned char)status, STATUS_PORT); /* minikvm exits here */
	else
		say("ioperm(0x%x): %s", STATUS_PORT, strerror(errno));
	/* Not under minikvm, or the port is missing: stop the machine anyway. */
	reboot(RB_POWER_OFF);
	for (;;)
		pause();
}

/* "minikvm-init: <what>: <strerror>", then status 125. For PID 1 only. */
static void die(const char *format, ...) __attribute__((noreturn, format(printf, 1, 2)));

static void die(const char *format, ...)
{
	int saved = errno;
	char what[400];
	va_list args;

	va_start(args, format);
	vsnprintf(what, sizeof(what), format, args);
	va_end(args);
	say("%s: %s", what, strerror(saved));
	report_status(SETUP_FAILED);
}

/* mkdir that is content when the directory is already there. */
static int make_dir(const char *path, mode_t mode)
{
	struct stat st;

	if (mkdir(path, mode) == 0)
		return 0;
	if (errno == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode))
		return 0;
	if (errno == EEXIST)
		errno = ENOTDIR;
	return -1;
}

/* mkdir -p. */
static int make_dirs(const char *path, mode_t mode)
{
	char partial[PATH_MAX];
	size_t length = strlen(path);
	size_t i;

	if (length >= sizeof(partial)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(partial, path, length + 1);
	for (i = 1; i <= length; i++) {
		if (partial[i] != '/' && partial[i] != '\0')
			continue;
		partial[i] = '\0';
		if (make_dir(partial, mode) != 0)
			return -1;
		partial[i] = path[i];
	}
	return 0;
}

/* Creates the mount point if needed, then mounts; dies on failure. */
static void mount_at(const char *source, const char *target, const char *type, unsigned long flags,
		     const char *options)
{
	if (make_dirs(target, 0755) != 0)
		die("cannot create mount point %s", target);
	if (mount(source, target, type, flags, options) != 0)
		die("mount %s on %s", type, target);
}

/* The kernel opens /dev/console (the initramfs's node) for us; if it could
 * not, try again now that devtmpfs is there. */
static void ensure_console(void)
{
	int fd;

	if (fcntl(STDERR_FILENO, F_GETFD) >= 0)
		return;
	fd = open("/dev/console", O_RDWR | O_NOCTTY);
	if (fd < 0)
		return; /* no console: run anyway, the status still gets out */
	dup2(fd, STDIN_FILENO);
	dup2(fd, STDOUT_FILENO);
	dup2(fd, STDERR_FILENO);
	if (fd > STDERR_FILENO)
		close(fd);
}

/* /dev, /proc and /sys of the initramfs itself, so errors can be told. */
static void mount_initramfs_filesystems(void)
{
	if (make_dir("/dev", 0755) != 0 ||
	    (mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755") != 0 && errno != EBUSY)) {
		int failed = errno;

		ensure_console();
		errno = failed;
		die("mount devtmpfs on /dev (the guest kernel needs CONFIG_DEVTMPFS=y)");
	}
	ensure_console();
	mount_at("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	mount_at("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
}

/* Reads and parses /minikvm/exec; the buffer lives as long as the init. */
static void read_config(struct exec_config *cfg)
{
	char error[200];
	struct stat st;
	char *buf;
	size_t done = 0;
	int fd = open(CONFIG_PATH, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || fstat(fd, &st) != 0)
		die("%s", CONFIG_PATH);
	buf = malloc((size_t)st.st_size + 1);
	if (!buf)
		die("%s", CONFIG_PATH);
	while (done < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + done, (size_t)st.st_size - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("read %s", CONFIG_PATH);
		if (n == 0)
			break;
		done += (size_t)n;
	}
	close(fd);
	if (exec_config_parse(buf, done, cfg, error, sizeof(error)) != 0) {
		say("%s: %s", CONFIG_PATH, error);
		report_status(SETUP_FAILED);
	}
}

/* tmpfs upper over the 9p lower at /mnt/root; false if the kernel has no
 * overlayfs. */
static int mount_overlay(void)
{
	mount_at("tmpfs", "/mnt/rw", "tmpfs", 0, "mode=0755");
	if (make_dir("/mnt/rw/upper", 0755) != 0 || make_dir("/mnt/rw/work", 0755) != 0)
		die("mkdir in /mnt/rw");
	if (make_dir("/mnt/root", 0755) != 0)
		die("mkdir /mnt/root");
	if (mount("overlay", "/mnt/root", "overlay", 0,
		  "lowerdir=/mnt/lower,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work") == 0)
		return 1;
	if (errno == ENODEV)
		return 0;
	die("mount overlay on /mnt/root");
}

/*
 * Mounts the host's root and returns the directory that becomes the guest's
 * root: the overlay, or the 9p mount itself when it is writable or when
 * there is no overlayfs.
 */
static const char *mount_root(const struct exec_config *cfg)
{
	const char *target = cfg->root_writable ? "/mnt/root" : "/mnt/lower";

	if (make_dirs(target, 0755) != 0)
		die("mkdir %s", target);
	if (mount(cfg->root_tag, target, "9p", cfg->root_writable ? 0 : MS_RDONLY,
		  cfg->root_writable ? P9_WRITABLE : P9_READ_ONLY) != 0) {
		/* ENODEV: no 9p filesystem; ENOENT: no virtio-9p device with this
		 * tag; EINVAL: no "virtio" 9p transport (the options are fixed). */
		if (errno == ENODEV || errno == ENOENT || errno == EINVAL) {
			say("cannot mount the host's files over 9p: %s (the guest kernel needs "
			    "CONFIG_NET_9P_VIRTIO=y and CONFIG_9P_FS=y, and virtio-pci)",
			    strerror(errno));
			report_status(SETUP_FAILED);
		}
		die("mount 9p '%s' on %s", cfg->root_tag, target);
	}
	if (cfg->root_writable || mount_overlay())
		return "/mnt/root";
	say("warning: no overlayfs (CONFIG_OVERLAY_FS=y): the root is read-only, "
	    "only /tmp and /run are writable");
	return target;
}

/* Makes `root` the root directory, as switch_root(8) does: pivot_root does
 * not work on the initramfs's rootfs. */
static void switch_root(const char *root)
{
	if (chdir(root) != 0)
		die("chdir %s", root);
	if (mount(".", "/", NULL, MS_MOVE, NULL) != 0)
		die("move %s to /", root);
	if (chroot(".") != 0 || chdir("/") != 0)
		die("chroot %s", root);
}

/*
 * The kernel filesystems and scratch space of the new root. Mounted after the
 * switch, so that paths resolve inside the host's tree: a host whose /tmp or
 * /home is a symlink gets the mount where the symlink points in that tree.
 */
static void mount_system_filesystems(void)
{
	mount_at("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	mount_at("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
	mount_at("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
	/* devtmpfs has the ptmx node; since Linux 4.7 it finds the devpts
	 * instance mounted next to it at /dev/pts. gid 5: "tty" on Debian,
	 * Fedora and Arch, whose /etc/group the command sees. */
	mount_at("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "mode=0620,ptmxmode=0666,gid=5");
	/* POSIX shared memory (shm_open, Python's multiprocessing) lives here. */
	mount_at("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
	mount_at("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
	mount_at("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
}

/* Each extra share at its path (created in the overlay when missing). */
static void mount_shares(const struct exec_config *cfg)
{
	size_t i;

	for (i = 0; i < cfg->nshares; i++) {
		const struct exec_share *share = &cfg->shares[i];

		if (make_dirs(share->path, 0755) != 0)
			die("cannot create mount point %s for share '%s'", share->path, share->tag);
		if (mount(share->tag, share->path, "9p", share->writable ? 0 : MS_RDONLY,
			  share->writable ? P9_WRITABLE : P9_READ_ONLY) != 0)
			die("mount 9p share '%s' on %s", share->tag, share->path);
	}
}

/* No echo, no CR/LF translation either way, and no ^S/^Q flow control: the
 * bytes of a pipe pass through as they are. ICANON stays, so that minikvm
 * ends the input with ^D (VEOF). */
static void make_terminal_plain(int fd)
{
	struct termios t;

	if (tcgetattr(fd, &t) != 0)
		die("tcgetattr on the terminal");
	t.c_oflag &= ~(tcflag_t)OPOST;
	t.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
	t.c_iflag &= ~(tcflag_t)(ICRNL | IXON);
	if (tcsetattr(fd, TCSANOW, &t) != 0)
		die("tcsetattr on the terminal");
}

/*
 * Opens the console device as PID 1's controlling terminal, sized and set up
 * for the command. When minikvm's own stdin is a terminal, that terminal is
 * raw on the host and this one stays cooked (as ssh -t does); otherwise this
 * one passes bytes through.
 */
static void open_terminal(const struct exec_config *cfg)
{
	/* No such device (no virtio-console in the kernel): the console is the
	 * next best place and needs no warning line in the command's output. */
	terminal = open(cfg->tty, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (terminal < 0)
		terminal = open("/dev/console", O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (terminal < 0)
		die("open /dev/console");
	/* A background process group (PID 1's, once the command is in the
	 * foreground) may set and drain the terminal only with SIGTTOU ignored;
	 * the command gets the default back. */
	signal(SIGTTOU, SIG_IGN);
	if (setsid() < 0 || ioctl(terminal, TIOCSCTTY, 0) != 0)
		say("warning: no controlling terminal (^C will not reach the command): %s", strerror(errno));
	if (cfg->rows && cfg->cols) {
		struct winsize size = { .ws_row = cfg->rows, .ws_col = cfg->cols };

		if (ioctl(terminal, TIOCSWINSZ, &size) != 0)
			say("warning: cannot set the terminal size: %s", strerror(errno));
	}
	if (!cfg->stdin_terminal)
		make_terminal_plain(terminal);
	/* stderr on a console of its own when minikvm gives one; else with
	 * stdout on the terminal, as before. */
	if (cfg->stderr_tty) {
		error_terminal = open(cfg->stderr_tty, O_RDWR | O_NOCTTY | O_CLOEXEC);
		if (error_terminal < 0)
			say("warning: %s: %s; the command's stderr goes with its stdout", cfg->stderr_tty,
			    strerror(errno));
		else if (!cfg->stdin_terminal)
			make_terminal_plain(error_terminal);
	}
	/* From now on the terminal keeps what minikvm types or pipes in for the
	 * command: tell minikvm to start sending (the byte's value is unused). */
	if (ioperm(TERMINAL_READY_PORT, 1, 1) == 0)
		outb(1, TERMINAL_READY_PORT);
}

/* In the child: a failure before exec. PID 1 reports the 125. */
static void child_fail(const char *what) __attribute__((noreturn));

static void child_fail(const char *what)
{
	say("%s: %s", what, strerror(errno));
	_exit(SETUP_FAILED);
}

/*
 * The child's own process group, in the foreground: ^C and ^\ signal it, and
 * it may read the terminal. Its parent being init, the kernel treats the
 * group as orphaned and ignores ^Z, as for a command run by ssh -t.
 */
static void enter_foreground(void)
{
	if (setpgid(0, 0) != 0)
		child_fail("setpgid");
	/* Fails only without a controlling terminal, already warned about. */
	tcsetpgrp(terminal, getpid());
	signal(SIGTTOU, SIG_DFL);
	if (dup2(terminal, STDIN_FILENO) < 0 || dup2(terminal, STDOUT_FILENO) < 0 ||
	    dup2(error_terminal >= 0 ? error_terminal : terminal, STDERR_FILENO) < 0)
		child_fail("dup2");
}

/* The caller's groups, gid and uid, in the order that still has the right
 * to set the next. */
static void become_caller(const struct exec_config *cfg)
{
	if (setgroups(cfg->ngroups, cfg->groups) != 0)
		child_fail("setgroups");
	if (setgid(cfg->gid) != 0)
		child_fail("setgid");
	if (setuid(cfg->uid) != 0)
		child_fail("setuid");
}

/* The child: becomes the caller and runs /bin/sh -c CMD. Never returns. */
static void __attribute__((noreturn)) run_command(const struct exec_config *cfg)
{
	char *argv[] = { "sh", "-c", (char *)cfg->cmd, NULL };
	int failed;

	enter_foreground();
	become_caller(cfg);
	/* After setuid: the directory is entered with the caller's rights. */
	if (chdir(cfg->cwd) != 0) {
		say("warning: cannot enter %s: %s; starting in /", cfg->cwd, strerror(errno));
		if (chdir("/") != 0)
			child_fail("chdir /");
	}
	/* The env records are the whole environment (clearenv + setenv). */
	execve("/bin/sh", argv, cfg->env);
	failed = errno;
	say("cannot run /bin/sh: %s", strerror(failed));
	/* The shell's own conventions: 127 not found, 126 not executable. */
	_exit(failed == ENOENT ? 127 : 126);
}

/* Reaps every child (orphans re-parent to PID 1) until the command exits;
 * returns its status as a shell would: the exit code, or 128 + signal. */
static int wait_for_command(pid_t command)
{
	for (;;) {
		int status;
		pid_t pid = wait(&status);

		if (pid < 0) {
			if (errno == EINTR)
				continue;
			die("wait");
		}
		if (pid != command)
			continue;
		if (WIFEXITED(status))
			return WEXITSTATUS(status);
		if (WIFSIGNALED(status))
			return 128 + WTERMSIG(status);
	}
}

int main(void)
{
	struct exec_config cfg;
	pid_t command;
	int status;

	mount_initramfs_filesystems();
	read_config(&cfg);
	switch_root(mount_root(&cfg));
	mount_system_filesystems();
	mount_shares(&cfg);
	open_terminal(&cfg);
	command = fork();
	if (command < 0)
		die("fork");
	if (command == 0)
		run_command(&cfg);
	status = wait_for_command(command);
	/* What the command left running dies with the machine anyway; stopped
	 * now, it cannot keep the terminal busy while its output drains. */
	kill(-1, SIGKILL);
	report_status(status);
}

#pragma once
/*
 * The configuration of `minikvm --exec`'s guest init (exec_init.c), read from
 * /minikvm/exec in the initramfs that boot/exec_initramfs.cpp builds.
 *
 * The file is a sequence of records `KEY=VALUE\0`: NUL-terminated, so a
 * command or an environment value may hold newlines. Keys:
 *   cmd             the command for /bin/sh -c (exactly once)
 *   cwd             absolute directory to start in (default /)
 *   uid, gid        decimal (default 0)
 *   groups          supplementary groups, comma-separated decimal; may be empty
 *   env             NAME=value, repeatable; the command's whole environment
 *   rows, cols      terminal size, decimal; 0 = unknown
 *   stdin_terminal  1 when minikvm's stdin is a terminal (cooked tty), else 0
 *   tty             absolute path of the console device (default /dev/console)
 *   stderr_tty      absolute path of the command's stderr device (default:
 *                   the tty)
 *   root_tag        the virtio-9p tag of the host's root (default root)
 *   root_writable   1: the root share is mounted read-write, without overlay
 *   share           TAG:WRITABLE:PATH, repeatable; WRITABLE is 0 or 1, PATH
 *                   is absolute and last, so it may contain ':'
 * Every key but env and share appears at most once; an unknown key is an
 * error.
 *
 * Plain C (the init is C), shared with the host's unit tests.
 */

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

struct exec_share {
	const char *tag;
	const char *path;
	int writable;
};

struct exec_config {
	const char *cmd;
	const char *cwd;
	uid_t uid;
	gid_t gid;
	gid_t *groups;
	size_t ngroups;
	char **env; /* NULL-terminated, for execve */
	size_t nenv;
	uint16_t rows, cols;
	int stdin_terminal;
	const char *tty;
	const char *stderr_tty; /* NULL: stderr is the tty too */
	const char *root_tag;
	int root_writable;
	struct exec_share *shares;
	size_t nshares;
};

/*
 * Parses the records in buf[0, len) in place: the strings in *cfg point into
 * buf, which must outlive it. Returns 0, or -1 with a one-line reason in
 * err[0, errlen) (and *cfg freed).
 */
int exec_config_parse(char *buf, size_t len, struct exec_config *cfg, char *err, size_t errlen);

/* Frees what exec_config_parse allocated (not buf). */
void exec_config_free(struct exec_config *cfg);

#ifdef __cplusplus
}
#endif

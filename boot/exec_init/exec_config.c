/*
 * The parser of /minikvm/exec (format: exec_config.h). The init's only input
 * parser, so it is strict: an unknown key, a repeated single key, a bad
 * number or a relative path is an error, never a guess.
 */

#include "boot/exec_init/exec_config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum key {
	KEY_CMD,
	KEY_CWD,
	KEY_UID,
	KEY_GID,
	KEY_GROUPS,
	KEY_ROWS,
	KEY_COLS,
	KEY_STDIN_TERMINAL,
	KEY_TTY,
	KEY_STDERR_TTY,
	KEY_ROOT_TAG,
	KEY_ROOT_WRITABLE,
	/* Repeatable keys after this line. */
	KEY_ENV,
	KEY_SHARE,
	KEY_COUNT,
};

static const char *const key_names[KEY_COUNT] = {
	[KEY_CMD] = "cmd",
	[KEY_CWD] = "cwd",
	[KEY_UID] = "uid",
	[KEY_GID] = "gid",
	[KEY_GROUPS] = "groups",
	[KEY_ROWS] = "rows",
	[KEY_COLS] = "cols",
	[KEY_STDIN_TERMINAL] = "stdin_terminal",
	[KEY_TTY] = "tty",
	[KEY_STDERR_TTY] = "stderr_tty",
	[KEY_ROOT_TAG] = "root_tag",
	[KEY_ROOT_WRITABLE] = "root_writable",
	[KEY_ENV] = "env",
	[KEY_SHARE] = "share",
};

/* (uid_t)-1 and (gid_t)-1 mean "leave unchanged" to the set*id calls. */
#define MAX_ID 0xfffffffeu

/* Writes a one-line reason into err; returns -1 so callers can return it. */
static int fail(char *err, size_t errlen, const char *format, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *format, ...)
{
	va_list args;

	if (errlen == 0)
		return -1;
	va_start(args, format);
	vsnprintf(err, errlen, format, args);
	va_end(args);
	return -1;
}

/* Decimal digits only (no sign, no space), at most max. */
static int parse_number(const char *s, uint32_t max, uint32_t *out)
{
	uint64_t value = 0;

	if (*s == '\0')
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		value = value * 10 + (uint64_t)(*s - '0');
		if (value > max)
			return -1;
	}
	*out = (uint32_t)value;
	return 0;
}

static int parse_flag(const char *s, int *out)
{
	if (strcmp(s, "0") != 0 && strcmp(s, "1") != 0)
		return -1;
	*out = s[0] == '1';
	return 0;
}

/* "1,2,3" or "": a number between every pair of commas, none empty. */
static int parse_groups(const char *s, struct exec_config *cfg)
{
	size_t count = 0;
	const char *p;

	if (*s == '\0')
		return 0;
	for (p = s, count = 1; *p; p++)
		count += *p == ',';
	cfg->groups = calloc(count, sizeof(*cfg->groups));
	if (!cfg->groups)
		return -1;
	while (cfg->ngroups < count) {
		char number[11];
		size_t length = strcspn(s, ",");
		uint32_t value;

		if (length == 0 || length >= sizeof(number))
			return -1;
		memcpy(number, s, length);
		number[length] = '\0';
		if (parse_number(number, MAX_ID, &value) != 0)
			return -1;
		cfg->groups[cfg->ngroups++] = (gid_t)value;
		s += length + (s[length] == ',');
	}
	return 0;
}

/* Appends NAME=value, keeping env NULL-terminated for execve. */
static int add_env(struct exec_config *cfg, char *entry, char *err, size_t errlen)
{
	char **grown;

	if (entry[0] == '=' || !strchr(entry, '='))
		return fail(err, errlen, "env record '%.40s' is not NAME=value", entry);
	grown = realloc(cfg->env, (cfg->nenv + 2) * sizeof(*grown));
	if (!grown)
		return fail(err, errlen, "out of memory");
	cfg->env = grown;
	cfg->env[cfg->nenv++] = entry;
	cfg->env[cfg->nenv] = NULL;
	return 0;
}

/* TAG:WRITABLE:PATH, split in place. */
static int add_share(struct exec_config *cfg, char *value, char *err, size_t errlen)
{
	struct exec_share share;
	struct exec_share *grown;
	char *flag = strchr(value, ':');
	char *path = flag ? strchr(flag + 1, ':') : NULL;

	if (!path)
		return fail(err, errlen, "share record '%.60s' is not TAG:WRITABLE:PATH", value);
	*flag++ = '\0';
	*path++ = '\0';
	share.tag = value;
	share.path = path;
	if (*share.tag == '\0')
		return fail(err, errlen, "share record with an empty tag");
	if (parse_flag(flag, &share.writable) != 0)
		return fail(err, errlen, "share '%.40s': WRITABLE must be 0 or 1, not '%.10s'", share.tag, flag);
	if (share.path[0] != '/')
		return fail(err, errlen, "share '%.40s': path '%.60s' is not absolute", share.tag, share.path);
	grown = realloc(cfg->shares, (cfg->nshares + 1) * sizeof(*grown));
	if (!grown)
		return fail(err, errlen, "out of memory");
	cfg->shares = grown;
	cfg->shares[cfg->nshares++] = share;
	return 0;
}

static int set_path(const char **field, const char *key, const char *value, char *err, size_t errlen)
{
	if (value[0] != '/')
		return fail(err, errlen, "%s '%.60s' is not an absolute path", key, value);
	*field = value;
	return 0;
}

/* Stores one record's value; the key is known and not a repeat. */
static int apply(struct exec_config *cfg, enum key key, char *value, char *err, size_t errlen)
{
	const char *name = key_names[key];
	uint32_t number;

	switch (key) {
	case KEY_CMD:
		cfg->cmd = value;
		return 0;
	case KEY_CWD:
		return set_path(&cfg->cwd, name, value, err, errlen);
	case KEY_TTY:
		return set_path(&cfg->tty, name, value, err, errlen);
	case KEY_STDERR_TTY:
		return set_path(&cfg->stderr_tty, name, value, err, errlen);
	case KEY_UID:
	case KEY_GID:
		if (parse_number(value, MAX_ID, &number) != 0)
			return fail(err, errlen, "%s '%.20s' is not an id (decimal, below 4294967295)", name, value);
		if (key == KEY_UID)
			cfg->uid = (uid_t)number;
		else
			cfg->gid = (gid_t)number;
		return 0;
	case KEY_GROUPS:
		if (parse_groups(value, cfg) != 0)
			return fail(err, errlen, "groups '%.60s' is not a comma-separated list of ids", value);
		return 0;
	case KEY_ROWS:
	case KEY_COLS:
		if (parse_number(value, 0xffff, &number) != 0)
			return fail(err, errlen, "%s '%.20s' is not a number from 0 to 65535", name, value);
		if (key == KEY_ROWS)
			cfg->rows = (uint16_t)number;
		else
			cfg->cols = (uint16_t)number;
		return 0;
	case KEY_STDIN_TERMINAL:
	case KEY_ROOT_WRITABLE:
		if (parse_flag(value, key == KEY_STDIN_TERMINAL ? &cfg->stdin_terminal : &cfg->root_writable) != 0)
			return fail(err, errlen, "%s must be 0 or 1, not '%.10s'", name, value);
		return 0;
	case KEY_ROOT_TAG:
		if (*value == '\0')
			return fail(err, errlen, "root_tag is empty");
		cfg->root_tag = value;
		return 0;
	case KEY_ENV:
		return add_env(cfg, value, err, errlen);
	case KEY_SHARE:
		return add_share(cfg, value, err, errlen);
	case KEY_COUNT:
		break;
	}
	return fail(err, errlen, "internal error: key %d", (int)key);
}

static int find_key(const char *name)
{
	int key;

	for (key = 0; key < KEY_COUNT; key++)
		if (strcmp(name, key_names[key]) == 0)
			return key;
	return -1;
}

/* Splits one KEY=VALUE record in place and applies it. */
static int parse_record(struct exec_config *cfg, char *record, unsigned *seen, char *err, size_t errlen)
{
	char *equals = strchr(record, '=');
	int key;

	if (!equals)
		return fail(err, errlen, "record '%.40s' has no '='", record);
	*equals = '\0';
	key = find_key(record);
	if (key < 0)
		return fail(err, errlen, "unknown key '%.40s'", record);
	if (key < KEY_ENV) {
		if (*seen & (1u << key))
			return fail(err, errlen, "key '%s' appears twice", key_names[key]);
		*seen |= 1u << key;
	}
	return apply(cfg, (enum key)key, equals + 1, err, errlen);
}

int exec_config_parse(char *buf, size_t len, struct exec_config *cfg, char *err, size_t errlen)
{
	unsigned seen = 0;
	size_t pos = 0;

	memset(cfg, 0, sizeof(*cfg));
	cfg->cwd = "/";
	cfg->tty = "/dev/console";
	cfg->root_tag = "root";
	if (len > 0 && buf[len - 1] != '\0') {
		fail(err, errlen, "the last record is not NUL-terminated");
		goto failed;
	}
	while (pos < len) {
		char *record = buf + pos;

		pos += strlen(record) + 1; /* stops at buf[len - 1] at the latest */
		if (parse_record(cfg, record, &seen, err, errlen) != 0)
			goto failed;
	}
	if (!cfg->cmd) {
		fail(err, errlen, "no cmd record");
		goto failed;
	}
	if (!cfg->env) { /* execve wants an array, even an empty one */
		cfg->env = calloc(1, sizeof(*cfg->env));
		if (!cfg->env) {
			fail(err, errlen, "out of memory");
			goto failed;
		}
	}
	return 0;

failed:
	exec_config_free(cfg);
	return -1;
}

void exec_config_free(struct exec_config *cfg)
{
	free(cfg->groups);
	free(cfg->env);
	free(cfg->shares);
	memset(cfg, 0, sizeof(*cfg));
}

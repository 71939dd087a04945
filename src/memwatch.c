/*
 * memwatch.c - per-process memory figures from /proc.
 *
 * USS (private pages) is the default measure: the copy-on-write pages a
 * worker still shares with the master are not its own doing and would
 * otherwise be charged once per worker.
 */
#include "autoconfig.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "memwatch.h"

static ssize_t
memwatch_slurp(const char *path, char *buf, size_t len)
{
	ssize_t n, total = 0;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	while ((size_t)total < len - 1) {
		n = read(fd, buf + total, len - 1 - (size_t)total);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		total += n;
	}
	close(fd);
	buf[total] = '\0';
	return total;
}

/* Value of "Key:   1234 kB" in bytes, or 0. */
static uint64_t
memwatch_field(const char *buf, const char *key)
{
	const char *p = buf;
	size_t kl = strlen(key);

	while ((p = strstr(p, key)) != NULL) {
		if ((p == buf || p[-1] == '\n') && p[kl] == ':')
			return strtoull(p + kl + 1, NULL, 10) * 1024;
		p += kl;
	}
	return 0;
}

void
memwatch_state(pid_t pid, char *buf, size_t len)
{
	char path[64], stat[512], wchan[64];
	const char *p, *what;
	size_t i;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	/* The state follows the ")" that ends the command name. */
	if (memwatch_slurp(path, stat, sizeof(stat)) <= 0 ||
	    (p = strrchr(stat, ')')) == NULL || p[1] != ' ') {
		snprintf(buf, len, "state unknown");
		return;
	}
	switch (p[2]) {
	case 'R': what = "running"; break;
	case 'S': what = "sleeping"; break;
	case 'D': what = "in uninterruptible sleep"; break;
	case 'T': case 't': what = "stopped"; break;
	default:  what = "in state"; break;
	}
	snprintf(path, sizeof(path), "/proc/%d/wchan", (int)pid);
	if (p[2] == 'R' || memwatch_slurp(path, wchan, sizeof(wchan)) <= 0 ||
	    strcmp(wchan, "0") == 0) {
		snprintf(buf, len, "%s", what);
		return;
	}
	for (i = 0; wchan[i] != '\0'; i++)
		if (wchan[i] != '_' && (wchan[i] < 'a' || wchan[i] > 'z') &&
		    (wchan[i] < '0' || wchan[i] > '9'))
			wchan[i] = '?';
	snprintf(buf, len, "%s in %s", what, wchan);
}

int
memwatch_read(pid_t pid, struct mem_sample *out, int with_smaps)
{
	char path[64], buf[4096];

	memset(out, 0, sizeof(*out));
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if (memwatch_slurp(path, buf, sizeof(buf)) <= 0)
		return -1;
	out->rss = memwatch_field(buf, "VmRSS");
	out->rss_anon = memwatch_field(buf, "RssAnon");
	if (!with_smaps)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
	if (memwatch_slurp(path, buf, sizeof(buf)) <= 0)
		return -1;
	out->pss = memwatch_field(buf, "Pss");
	out->uss = memwatch_field(buf, "Private_Clean") +
	    memwatch_field(buf, "Private_Dirty");
	return 0;
}

/*
 * A value just over its limit must not round to the limit ("64.0 MB >
 * 64.0 MB" reads like a bug in the judge), so it gets as many decimals
 * as it takes to show it is over.
 */
const char *
memwatch_fmt_over(uint64_t bytes, uint64_t limit, char *buf, size_t len)
{
	double unit = 1024;
	const char *name = "kB";
	int prec = 1;

	if (bytes >= 1024ULL * 1024 * 1024) {
		unit = 1024.0 * 1024 * 1024;
		name = "GB";
		prec = 2;
	} else if (bytes >= 1024 * 1024) {
		unit = 1024.0 * 1024;
		name = "MB";
	}
	for (; prec < 13; prec++) {
		snprintf(buf, len, "%.*f %s", prec, bytes / unit, name);
		if (bytes <= limit || strtod(buf, NULL) * unit > (double)limit)
			break;
	}
	return buf;
}

const char *
memwatch_fmt(uint64_t bytes, char *buf, size_t len)
{
	return memwatch_fmt_over(bytes, UINT64_MAX, buf, len);
}

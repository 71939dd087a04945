/*
 * machine_costs.c - what the machine charges for the things a recycle and
 * a request are made of: a null syscall, a page fault on fresh memory, and
 * fork(2) of a small process that _exit(2)s at once and is reaped.
 *
 * bench/recycle-cost prints them next to molt's cost per recycle, so that
 * figures from a virtual machine where a page fault costs 10 us (and a
 * syscall 1 us) are read as such, and runs on different days compare.
 *
 * Usage: machine_costs [N]   prints medians of N tries (default 200):
 *   syscall_ns=...  fault_ns=...  fork_exit_us=...  fork_cpu_us=...
 *   inherit_read_ns=...  inherit_thp_us=...
 *        machine_costs -f [N]   prints fork_cpu_us=... alone
 *
 * fork_exit_us is wall time, which on a loaded machine includes waiting
 * for a CPU.  fork_cpu_us is CPU time: the parent's in fork(2) plus all
 * the child used (its rusage, which counts its exit), the least CPU that
 * replacing a process costs here.  bench/recycle-load measures it while
 * wrk loads a server, since a busy machine charges more for it than an
 * idle one.
 *
 * inherit_read_ns is what a forked child pays to read, the first time, a
 * page its parent had written (so the page-table entry came with the
 * fork): the price of each page of data or code a new worker touches.
 * A shadow-paging hypervisor charges microseconds for it.
 * inherit_thp_us is the same for a whole 2 MB transparent huge page, read
 * page by page (0 if the kernel gave no huge page: THP off).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FAULT_PAGES 256

static double
now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e9 + t.tv_nsec;
}

static int
cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double
median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp);
	return v[n / 2];
}

static double
thread_cpu_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

/* The parent's CPU time in fork(2), plus the child's whole life. */
static int
fork_cpu(double *v, int n)
{
	struct rusage ru;
	struct timespec pause = { 0, 2000000 };
	double t;
	pid_t pid;
	int i;

	for (i = 0; i < n; i++) {
		t = thread_cpu_us();
		if ((pid = fork()) == -1) {
			perror("fork");
			return -1;
		}
		if (pid == 0)
			_exit(0);
		t = thread_cpu_us() - t;
		if (wait4(pid, NULL, 0, &ru) == -1) {
			perror("wait4");
			return -1;
		}
		v[i] = t + ru.ru_utime.tv_sec * 1e6 + ru.ru_utime.tv_usec +
		    ru.ru_stime.tv_sec * 1e6 + ru.ru_stime.tv_usec;
		/* A recycle's pace, not a fork bomb's: leave the load its CPUs. */
		nanosleep(&pause, NULL);
	}
	return 0;
}

#define HUGE_SIZE (2UL << 20)

/* CPU the child spends reading one byte of each page of [p, p + len). */
static int
inherit_read(double *v, int n, const char *p, size_t len, long page)
{
	int fds[2], i;
	double t;
	size_t k;
	pid_t pid;

	if (pipe(fds) == -1) {
		perror("pipe");
		return -1;
	}
	for (i = 0; i < n; i++) {
		if ((pid = fork()) == -1) {
			perror("fork");
			return -1;
		}
		if (pid == 0) {
			volatile char sum = 0;

			t = thread_cpu_us();
			for (k = 0; k < len; k += (size_t)page)
				sum += p[k];
			(void)sum;
			t = thread_cpu_us() - t;
			_exit(write(fds[1], &t, sizeof(t)) == sizeof(t) ? 0 : 1);
		}
		if (read(fds[0], &v[i], sizeof(v[i])) != sizeof(v[i]) ||
		    waitpid(pid, NULL, 0) == -1) {
			perror("inherit_read");
			return -1;
		}
	}
	close(fds[0]);
	close(fds[1]);
	return 0;
}

/* A 2 MB-aligned, written region; huge asks for a transparent huge page. */
static char *
inherit_region(int huge, int *got_huge)
{
	char *raw, *p;
	FILE *f;
	char line[256];
	long kb = 0;

	raw = mmap(NULL, HUGE_SIZE * 2, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (raw == MAP_FAILED) {
		perror("mmap");
		return NULL;
	}
	p = (char *)(((unsigned long)raw + HUGE_SIZE - 1) & ~(HUGE_SIZE - 1));
	(void)madvise(p, HUGE_SIZE, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	memset(p, 1, HUGE_SIZE);
	*got_huge = 0;
	if (huge && (f = fopen("/proc/self/smaps_rollup", "r")) != NULL) {
		while (fgets(line, sizeof(line), f) != NULL)
			if (sscanf(line, "AnonHugePages: %ld kB", &kb) == 1)
				*got_huge = kb >= 2048;
		fclose(f);
	}
	return p;
}

int
main(int argc, char **argv)
{
	int only_fork = argc > 1 && strcmp(argv[1], "-f") == 0;
	int n = argc > 1 + only_fork ? atoi(argv[1 + only_fork]) : 200, i, k;
	long page = sysconf(_SC_PAGESIZE);
	double *v, t;
	char *p;
	pid_t pid;

	if (n < 1 || page <= 0 || (v = calloc((size_t)n, sizeof(*v))) == NULL)
		return 1;
	if (only_fork) {
		if (fork_cpu(v, n) == -1)
			return 1;
		printf("fork_cpu_us=%.0f\n", median(v, n));
		return 0;
	}

	/* A syscall that does nothing, not the vDSO: getppid via syscall(2). */
	for (i = 0; i < n; i++) {
		t = now_ns();
		for (k = 0; k < 1000; k++)
			syscall(SYS_getppid);
		v[i] = (now_ns() - t) / 1000;
	}
	printf("syscall_ns=%.0f ", median(v, n));

	/* First write to each page of a fresh anonymous mapping. */
	for (i = 0; i < n; i++) {
		p = mmap(NULL, (size_t)page * FAULT_PAGES, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) {
			perror("mmap");
			return 1;
		}
		t = now_ns();
		for (k = 0; k < FAULT_PAGES; k++)
			p[(size_t)k * (size_t)page] = 1;
		v[i] = (now_ns() - t) / FAULT_PAGES;
		if (munmap(p, (size_t)page * FAULT_PAGES) == -1) {
			perror("munmap");
			return 1;
		}
	}
	printf("fault_ns=%.0f ", median(v, n));

	for (i = 0; i < n; i++) {
		t = now_ns();
		if ((pid = fork()) == -1) {
			perror("fork");
			return 1;
		}
		if (pid == 0)
			_exit(0);
		if (waitpid(pid, NULL, 0) == -1) {
			perror("waitpid");
			return 1;
		}
		v[i] = (now_ns() - t) / 1000;
	}
	printf("fork_exit_us=%.0f ", median(v, n));
	if (fork_cpu(v, n) == -1)
		return 1;
	printf("fork_cpu_us=%.0f ", median(v, n));

	/* Fewer tries: each reads 2 MB page by page in a new process. */
	k = n < 50 ? n : 50;
	if ((p = inherit_region(0, &i)) == NULL ||
	    inherit_read(v, k, p, HUGE_SIZE, page) == -1)
		return 1;
	printf("inherit_read_ns=%.0f ", median(v, k) * 1000 / (HUGE_SIZE / page));
	if ((p = inherit_region(1, &i)) == NULL)
		return 1;
	if (!i)
		printf("inherit_thp_us=0\n");
	else if (inherit_read(v, k, p, HUGE_SIZE, page) == -1)
		return 1;
	else
		printf("inherit_thp_us=%.0f\n", median(v, k));
	return 0;
}

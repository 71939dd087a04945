/*
 * fork_floor.c - what the machine charges for the least a recycle can do:
 * fork(2) a small process, let it _exit(2), reap it.  bench/recycle-cost
 * prints it next to molt's cost per recycle, so that a figure from a
 * virtual machine whose page faults cost 10 us is read as such.
 *
 * Usage: fork_floor [N]   prints "fork_exit_us=<median of N>".
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int
cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

int
main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 200, i;
	struct timespec t0, t1;
	double *us;
	pid_t pid;

	if (n < 1 || (us = calloc((size_t)n, sizeof(*us))) == NULL)
		return 1;
	for (i = 0; i < n; i++) {
		clock_gettime(CLOCK_MONOTONIC, &t0);
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
		clock_gettime(CLOCK_MONOTONIC, &t1);
		us[i] = (t1.tv_sec - t0.tv_sec) * 1e6 + (t1.tv_nsec - t0.tv_nsec) / 1e3;
	}
	qsort(us, (size_t)n, sizeof(*us), cmp);
	printf("fork_exit_us=%.0f\n", us[n / 2]);
	return 0;
}

/*
 * module.h - loading handler modules and resolving their settings.
 *
 * Workers and the validating child load modules and call their hooks.
 * The master only keeps the files a validator accepted loaded, so that
 * the workers it forks find them mapped; it calls no hook, so a broken
 * module can only take down a worker.
 */
#ifndef MOLT_MODULE_INTERNAL_H
#define MOLT_MODULE_INTERNAL_H

#include <stddef.h>

#include "molt/module.h"

struct molt_config;
struct conf_error;
struct route_conf;

struct module {
	char                      *name;
	char                      *path;
	void                      *dl;
	const struct molt_module  *m;
	struct module             *next;
};

struct conf_val {
	const char          *key;
	enum molt_conf_type  type;
	const char          *text;   /* NULL: unset and no default */
	long long            num;    /* parsed INT/SIZE/DURATION/BOOL */
	const char          *file;
	int                  line;
};

struct molt_conf {
	const char      *route;      /* route prefix, for messages */
	size_t           n;
	struct conf_val *v;
};

/*
 * Loads every module the routes use, checks ABI and settings, and runs
 * each module's check().  On success *mods holds the loaded modules and
 * each route_conf gets its resolved settings via module_route_conf().
 */
int  module_check_all(struct molt_config *cfg, struct module **mods,
                      struct conf_error *err);
/* The resolved settings of a route (after module_check_all). */
struct molt_conf *module_conf_for(struct module *mods, struct route_conf *rc);
const struct molt_module *module_find(struct module *mods, const char *name);
void module_unload_all(struct module *mods);

/*
 * Modules run from private copies of their files (module.c says why).
 * The master copies the files of cfg's modules before a check
 * (module_stage_all), which the validator loads after dropping the copies
 * the master keeps loaded (module_unpin_all); once it accepted them the
 * master keeps those very copies loaded for the new generation
 * (module_pin_all), or drops them if the reload failed
 * (module_unstage_all).
 */
void module_stage_all(const struct molt_config *cfg);
void module_unstage_all(void);
void module_pin_all(const struct molt_config *cfg);
void module_unpin_all(void);

/*
 * What the module check is doing, kept where the master can read it if
 * module code kills the check or hangs it (master.c): FILE:LINE of the
 * route and a phrase that follows "crashed (signal 7)" or "timed out
 * after 5 s".  Written by the validator only, after module_step_to().
 */
struct module_step {
	char where[512];
	char what[512];
};

void module_step_to(struct module_step *st);
/* FILE:LINE (line 0: FILE) and the phrase; no-ops outside the validator. */
void module_step(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void module_step_clear(void);

#endif

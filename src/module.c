/*
 * module.c - finding, loading and checking handler modules.
 *
 * A module is refused before any of its hooks run if its magic or ABI does
 * not match, with a message that names the file and both versions.  Its
 * settings are resolved per route (route section, then [module NAME], then
 * the declared default) and type-checked with the file:line they came from.
 */
#include "autoconfig.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "module.h"

struct binding {
	struct route_conf *rc;
	struct molt_conf  *conf;
	struct binding    *next;
};

static struct binding *bindings;

/*
 * A module runs from a private copy of its file, never from the file
 * itself.  ld.so maps a library's pages from the page cache, shared with
 * the file: `cp new.so ver.so` rewrites them in place, under every process
 * that has the module loaded, and the code they run changes mid-flight.
 * Before the copies, that one cp (no reload needed) killed every worker
 * with SIGSEGV or SIGBUS; the master's own mapping was rewritten too, so
 * each replacement crashed at start-up and every reload's check crashed in
 * dlclose, until molt was restarted: every route down, not only the
 * module's.  So the bytes of each module file are read once into a memfd
 * (sealed: nothing can write to it any more) and ld.so is given
 * "/proc/self/fd/N": what runs is what was read, whatever happens to the
 * file after.  (install(1) and mv, which put a new inode in place, never
 * had the problem.)
 *
 * The copies are made by the master before a check (module_stage_all), so
 * the validator checks the very bytes the generation then runs: the
 * master keeps those copies loaded ("pinned", module_pin_all) once the
 * validator accepted them, so that a new worker finds each one mapped and
 * relocated instead of doing both again (on the guests of
 * doc/benchmarks-history.md that was 0.4 ms of every recycle for one small
 * module).  The master looks nothing up and calls no hook; the ELF
 * constructors do run in it, as in Apache's and nginx's masters.  A
 * worker takes its generation's pinned copy by the module's name, with
 * the handle its fork copied (module_load), so it runs the checked bytes
 * even if the file was replaced or removed since.
 *
 * ld.so knows a loaded object by the name it was given, so a copy's fd
 * stays open as long as its object may be loaded: another copy can never
 * get the same "/proc/self/fd/N" and be taken for it.
 */
struct module_copy {
	char *path;             /* the file in modules_dir */
	int   fd;               /* memfd with its bytes as they were read */
	char  name[32];         /* "/proc/self/fd/N", what dlopen is given */
	void *dl;               /* pinned (master), or NULL: staged */
	/* Its molt_module, looked up once by the master for every worker
	 * (NULL: not found, and each worker says so); a worker's own dlsym
	 * would write ld.so's lock, a page it shares with the master. */
	const struct molt_module *sym;
};

static struct module_copy *pins, *staged;
static int npins, nstaged;
static struct module *
module_lookup(struct module *mods, const char *name)
{
	for (; mods != NULL; mods = mods->next)
		if (strcmp(mods->name, name) == 0)
			return mods;
	return NULL;
}

const struct molt_module *
module_find(struct module *mods, const char *name)
{
	struct module *m = module_lookup(mods, name);

	return m ? m->m : NULL;
}

/*
 * Finds NAME.so along the colon-separated search path.  As execvp(3)
 * does, a directory that cannot be searched does not end the search, but
 * if the file is found nowhere errno says why that directory failed
 * (EACCES for a modules_dir the workers' user cannot enter), not ENOENT.
 */
static int
module_path(const char *dirs, const char *name, char *out, size_t outlen)
{
	const char *p = dirs, *colon;
	int saved = ENOENT;

	while (p != NULL && *p != '\0') {
		size_t len;

		colon = strchr(p, ':');
		len = colon ? (size_t)(colon - p) : strlen(p);
		if (len > 0 && (size_t)snprintf(out, outlen, "%.*s/%s.so", (int)len,
		    p, name) < outlen) {
			if (access(out, F_OK) == 0)
				return 0;
			if (errno != ENOENT && errno != ENOTDIR && saved == ENOENT)
				saved = errno;
		}
		p = colon ? colon + 1 : NULL;
	}
	errno = saved;
	return -1;
}

/*
 * dlerror() begins with the name dlopen was given, the private copy's
 * "/proc/self/fd/N", which tells a user nothing: the file is named
 * already in the line, so that prefix goes.
 */
static const char *
module_dlerror(const char *dlname)
{
	const char *e = dlerror();
	size_t n = strlen(dlname);

	if (e == NULL)
		return "unknown error";
	if (strncmp(e, dlname, n) == 0 && e[n] == ':' && e[n + 1] == ' ')
		return e + n + 2;
	return e;
}

/*
 * Copies the file open as fd (path, for messages) into a sealed memfd.
 * 0, or -1 with err filled.
 */
static int
module_copy_fd(int fd, const char *path, struct module_copy *mc, char *err,
    size_t errlen)
{
	const char *base = strrchr(path, '/');
	char name[64];
	ssize_t n;
	int mfd;

	snprintf(name, sizeof(name), "molt-module:%s", base ? base + 1 : path);
	if ((mfd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING)) == -1) {
		snprintf(err, errlen, "cannot copy module %s: memfd_create: %s",
		    path, strerror(errno));
		return -1;
	}
	for (;;) {
		n = sendfile(mfd, fd, NULL, 1 << 30);
		if (n == 0)
			break;
		if (n == -1 && errno != EINTR) {
			snprintf(err, errlen, "cannot copy module %s: %s", path,
			    strerror(errno));
			goto fail;
		}
	}
	if (fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE |
	    F_SEAL_SEAL) == -1) {
		snprintf(err, errlen, "cannot copy module %s: sealing the copy: %s",
		    path, strerror(errno));
		goto fail;
	}
	if ((mc->path = strdup(path)) == NULL) {
		snprintf(err, errlen, "out of memory copying module %s", path);
		goto fail;
	}
	mc->fd = mfd;
	snprintf(mc->name, sizeof(mc->name), "/proc/self/fd/%d", mfd);
	mc->dl = NULL;
	mc->sym = NULL;
	return 0;
fail:
	close(mfd);
	return -1;
}

static int
module_copy_file(const char *path, struct module_copy *mc, char *err,
    size_t errlen)
{
	int fd, rc;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		snprintf(err, errlen, "cannot load module %s: %s", path,
		    strerror(errno));
		return -1;
	}
	rc = module_copy_fd(fd, path, mc, err, errlen);
	close(fd);
	return rc;
}

static struct module_copy *
module_copy_find(struct module_copy *list, int n, const char *path)
{
	int i;

	for (i = 0; i < n; i++)
		if (list[i].path != NULL && strcmp(list[i].path, path) == 0)
			return &list[i];
	return NULL;
}

/*
 * A worker's copy of module NAME, as its generation pinned it: the file
 * NAME.so that module_path found when the master pinned it.
 */
static const struct module_copy *
module_pin_of(const char *name)
{
	size_t len = strlen(name);
	const char *base;
	int i;

	for (i = 0; i < npins; i++) {
		if (pins[i].path == NULL || pins[i].dl == NULL)
			continue;
		base = strrchr(pins[i].path, '/');
		base = base != NULL ? base + 1 : pins[i].path;
		if (strncmp(base, name, len) == 0 && strcmp(base + len, ".so") == 0)
			return &pins[i];
	}
	return NULL;
}

/* Appends *mc to a list; on failure the caller still owns it. */
static int
module_copy_add(struct module_copy **list, int *n, const struct module_copy *mc)
{
	struct module_copy *nl;

	if ((nl = realloc(*list, (size_t)(*n + 1) * sizeof(**list))) == NULL)
		return -1;
	*list = nl;
	nl[(*n)++] = *mc;
	return 0;
}

static void
module_copy_free(struct module_copy *mc)
{
	free(mc->path);
	mc->path = NULL;
	if (mc->fd >= 0 && close(mc->fd) == -1)
		log_warn("close (copy of module %s): %s", mc->name, strerror(errno));
	mc->fd = -1;
}

/* fn(path, arg) for the file of each route's module (repeats included). */
static void
module_each_path(const struct molt_config *cfg,
    void (*fn)(const char *, void *), void *arg)
{
	const struct route_conf *rc;
	char path[512];

	for (rc = cfg->routes; rc != NULL; rc = rc->next)
		if (cfg->server.modules_dir != NULL && !strpbrk(rc->module, "/.") &&
		    module_path(cfg->server.modules_dir, rc->module, path,
		    sizeof(path)) == 0)
			fn(path, arg);
}

static void
module_stage_one(const char *path, void *arg)
{
	struct module_copy mc;
	char err[640];

	(void)arg;
	if (module_copy_find(staged, nstaged, path) != NULL)
		return;
	/* On failure the validator reads the file itself and says why. */
	if (module_copy_file(path, &mc, err, sizeof(err)) == -1) {
		log_debug("%s", err);
		return;
	}
	if (module_copy_add(&staged, &nstaged, &mc) == -1) {
		log_error("out of memory copying module %s", path);
		module_copy_free(&mc);
	}
}

void
module_stage_all(const struct molt_config *cfg)
{
	module_unstage_all();
	module_each_path(cfg, module_stage_one, NULL);
}

void
module_unstage_all(void)
{
	int i;

	for (i = 0; i < nstaged; i++)
		module_copy_free(&staged[i]);
	free(staged);
	staged = NULL;
	nstaged = 0;
}

static void
module_pin_one(const char *path, void *arg)
{
	struct module_copy mc, *st;
	char err[640];

	(void)arg;
	if (module_copy_find(pins, npins, path) != NULL)
		return;
	if ((st = module_copy_find(staged, nstaged, path)) != NULL) {
		mc = *st;               /* the staged copy is the pin's now */
		st->path = NULL;
		st->fd = -1;
	} else if (module_copy_file(path, &mc, err, sizeof(err)) == -1) {
		log_warn("%s; each worker loads it itself", err);
		return;
	}
	if ((mc.dl = dlopen(mc.name, RTLD_NOW | RTLD_LOCAL)) == NULL) {
		log_warn("cannot keep module %s loaded in the master (%s); "
		    "each worker loads it itself", path, module_dlerror(mc.name));
		module_copy_free(&mc);
		return;
	}
	mc.sym = dlsym(mc.dl, "molt_module");
	if (module_copy_add(&pins, &npins, &mc) == -1) {
		log_error("out of memory pinning module %s", path);
		dlclose(mc.dl);
		module_copy_free(&mc);
	}
}

void
module_pin_all(const struct molt_config *cfg)
{
	module_unpin_all();
	module_each_path(cfg, module_pin_one, NULL);
	module_unstage_all();
}

void
module_unpin_all(void)
{
	void *dl;
	int i;

	for (i = 0; i < npins; i++) {
		/*
		 * dlclose runs the module's ELF destructors, here where no
		 * worker_init ran.  The validator unpins first, as the master
		 * will once the reload is accepted: a destructor that crashes
		 * there fails the check, naming the module, not the master.
		 */
		module_step(pins[i].path, 0, "in the destructors of this module, "
		    "which run when a reload unloads it from the master, where "
		    "worker_init never ran");
		if (dlclose(pins[i].dl) != 0)
			log_warn("dlclose %s: %s", pins[i].path, dlerror());
		/*
		 * ld.so keeps a NODELETE object and hands it to the next dlopen
		 * of the same name: its copy's fd stays open for good, so that no
		 * later copy is ever given that name.
		 */
		if ((dl = dlopen(pins[i].name, RTLD_LAZY | RTLD_NOLOAD)) != NULL) {
			log_warn("module %s cannot be unloaded (NODELETE); a new "
			    "version of it takes effect only after a restart",
			    pins[i].path);
			dlclose(dl);
			pins[i].fd = -1;
		}
		module_copy_free(&pins[i]);
	}
	free(pins);
	pins = NULL;
	npins = 0;
	module_step_clear();
}

static struct module_step *step;

void
module_step_to(struct module_step *st)
{
	step = st;
}

/* No module code runs past the checks: nothing to blame on one. */
void
module_step_clear(void)
{
	if (step != NULL)
		step->where[0] = step->what[0] = '\0';
}

/* file NULL: the same place, another thing done there; line 0: a file
 * that is not the configuration. */
void
module_step(const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	if (step == NULL)
		return;
	if (file != NULL && line > 0)
		snprintf(step->where, sizeof(step->where), "%s:%d", file, line);
	else if (file != NULL)
		snprintf(step->where, sizeof(step->where), "%s", file);
	va_start(ap, fmt);
	vsnprintf(step->what, sizeof(step->what), fmt, ap);
	va_end(ap);
}

/*
 * What the symbol molt_module is, from the module's own symbol table,
 * before a field of it is read: a function of that name would be read as
 * a struct ("bad magic"), and a struct shorter than ours would be read
 * past its end, into whatever the module placed after it.  Every 1.x
 * minor so far has the same struct; one that adds a field will have to
 * compare with the size of the module's own minor.
 */
static int
module_symbol_ok(const struct molt_module *m, const char *path, char *err,
    size_t errlen)
{
	Dl_info info;
	const ElfW(Sym) *sym = NULL;

	if (dladdr1(m, &info, (void **)&sym, RTLD_DL_SYMENT) == 0 ||
	    sym == NULL)
		return 0;       /* no symbol table entry to judge by */
	if (ELF64_ST_TYPE(sym->st_info) == STT_FUNC) {
		snprintf(err, errlen, "%s is not a molt module: its molt_module "
		    "is a function, not the const struct molt_module of "
		    "<molt/module.h>", path);
		return -1;
	}
	/* 0: no size recorded (assembly without .size), nothing to judge. */
	if (sym->st_size != 0 && sym->st_size < sizeof(struct molt_module)) {
		snprintf(err, errlen, "%s is not a molt module: its molt_module "
		    "is %zu bytes, where a struct molt_module of module ABI "
		    "%u.%u is %zu; rebuild it against <molt/module.h>", path,
		    (size_t)sym->st_size, MOLT_ABI_MAJOR, MOLT_ABI_MINOR,
		    sizeof(struct molt_module));
		return -1;
	}
	return 0;
}

static struct module *
module_load(const char *dirs, const char *name, char *err, size_t errlen)
{
	char path[512];
	const struct molt_module *m;
	const struct module_copy *mc;
	struct module_copy own;
	struct module *mod = NULL;
	const char *dlname;
	void *dl;
	size_t i;
	int fd, rc, borrowed = 0;

	for (i = 0; name[i] != '\0'; i++)
		if (name[i] == '/' || name[i] == '.') {
			snprintf(err, errlen, "module name '%s' must be a plain name "
			    "(the file NAME.so in modules_dir)", name);
			return NULL;
		}
	/*
	 * A worker runs the copy its generation's check accepted, which the
	 * master keeps loaded: the handle came with the fork.  Neither a
	 * search of modules_dir (a syscall per directory) nor a dlopen (ld.so
	 * writes its lock, the object's count and the debugger's list, pages
	 * it shares with the master until then) is needed: a new worker's
	 * start is 0.03-0.06 ms shorter with three modules on the bench
	 * guest.  The module stays loaded for the worker's life either way:
	 * workers never unload one.
	 */
	if ((mc = module_pin_of(name)) != NULL) {
		/* Not snprintf: nothing else in a worker's usual life needs the
		 * printf code, and each page of it is a first touch there. */
		i = strnlen(mc->path, sizeof(path) - 1);
		memcpy(path, mc->path, i);
		path[i] = '\0';
		dl = mc->dl;
		borrowed = 1;
		goto loaded;
	}
	if (dirs == NULL || module_path(dirs, name, path, sizeof(path)) == -1) {
		if (dirs != NULL && errno != ENOENT)
			snprintf(err, errlen, "module '%s': cannot look for %s.so in "
			    "modules_dir %s: %s (uid %d)", name, name, dirs,
			    strerror(errno), (int)geteuid());
		else
			snprintf(err, errlen, "module '%s' not found: no %s.so in "
			    "modules_dir %s", name, name, dirs ? dirs : "(unset)");
		return NULL;
	}
	/*
	 * The validator (or a worker whose module the master could not keep
	 * loaded): the copy the master made for this check, or, if it could
	 * make none, one of our own.  The file is opened either way, as
	 * [server] user, so that one the workers could not read is refused
	 * here as it was before the copies.
	 */
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		snprintf(err, errlen, "cannot load module %s: %s", path,
		    strerror(errno));
		return NULL;
	}
	if ((mc = module_copy_find(staged, nstaged, path)) == NULL) {
		/* Its fd stays open while the object may be loaded: for the
		 * life of this process (module_unload_all). */
		rc = module_copy_fd(fd, path, &own, err, errlen);
		close(fd);
		if (rc == -1)
			return NULL;
		free(own.path);
		mc = &own;
	} else {
		close(fd);
	}
	dlname = mc->name;
	/* A truncated file or a constructor that crashes dies in here. */
	module_step(NULL, 0, "while loading %s (module %s)", path, name);
	dl = dlopen(dlname, RTLD_NOW | RTLD_LOCAL);
	if (dl == NULL) {
		snprintf(err, errlen, "cannot load module %s: %s", path,
		    module_dlerror(dlname));
		if (mc == &own)
			close(own.fd);
		return NULL;
	}
loaded:
	m = borrowed && mc->sym != NULL ? mc->sym : dlsym(dl, "molt_module");
	if (m == NULL) {
		snprintf(err, errlen, "%s is not a molt module: it does not export "
		    "the symbol molt_module", path);
		goto fail;
	}
	/*
	 * A pinned copy was judged by the check that accepted it; judged
	 * again in each new worker, dladdr1 took ld.so's lock (a write to a
	 * page shared with the master: a copy-on-write fault) and cost a
	 * start 0.1-0.3 ms (bench/recycle-cost, recycle-load).
	 */
	if (!borrowed && module_symbol_ok(m, path, err, errlen) == -1)
		goto fail;
	if (m->magic != MOLT_MODULE_MAGIC) {
		snprintf(err, errlen, "%s is not a molt module: bad magic 0x%08x "
		    "(expected 0x%08x)", path, (unsigned)m->magic,
		    (unsigned)MOLT_MODULE_MAGIC);
		goto fail;
	}
	/* Same major, and a minor no newer than ours: everything it uses exists. */
	if (m->abi_major != MOLT_ABI_MAJOR || m->abi_minor > MOLT_ABI_MINOR) {
		snprintf(err, errlen, "%s was built for module ABI %u.%u, but this "
		    "molt provides module ABI %u.%u; rebuild it against "
		    "<molt/module.h> %u.%u", path, m->abi_major, m->abi_minor,
		    MOLT_ABI_MAJOR, MOLT_ABI_MINOR, MOLT_ABI_MAJOR, MOLT_ABI_MINOR);
		goto fail;
	}
	if (m->name == NULL || strcmp(m->name, name) != 0) {
		snprintf(err, errlen, "%s calls itself '%s'; the file name says '%s'",
		    path, m->name ? m->name : "(null)", name);
		goto fail;
	}
	if (m->handle == NULL) {
		snprintf(err, errlen, "module %s (%s) has no handle hook", name, path);
		goto fail;
	}
	mod = calloc(1, sizeof(*mod));
	if (mod == NULL || (mod->name = strdup(name)) == NULL ||
	    (mod->path = strdup(path)) == NULL) {
		snprintf(err, errlen, "out of memory loading %s", path);
		goto fail;
	}
	mod->dl = dl;
	mod->m = m;
	return mod;
fail:
	if (mod != NULL) {
		free(mod->name);
		free(mod->path);
		free(mod);
	}
	if (!borrowed)
		dlclose(dl);
	return NULL;
}

static int
module_parse_value(enum molt_conf_type type, const char *text, long long *num)
{
	int b;

	switch (type) {
	case MOLT_CONF_STRING:
		*num = 0;
		return 0;
	case MOLT_CONF_INT:
		return conf_parse_int(text, num);
	case MOLT_CONF_SIZE:
		return conf_parse_size(text, num);
	case MOLT_CONF_DURATION:
		return conf_parse_duration(text, num);
	case MOLT_CONF_BOOL:
		if (conf_parse_bool(text, &b) == -1)
			return -1;
		*num = b;
		return 0;
	}
	return -1;
}

static const char *
module_type_name(enum molt_conf_type type)
{
	switch (type) {
	case MOLT_CONF_STRING:   return "a string";
	case MOLT_CONF_INT:      return "an integer";
	case MOLT_CONF_SIZE:     return "a size (e.g. 512k, 16m)";
	case MOLT_CONF_DURATION: return "a duration (e.g. 250ms, 30s, 5m)";
	case MOLT_CONF_BOOL:     return "on or off";
	}
	return "?";
}

/* Resolves one route's settings for its module. */
static struct molt_conf *
module_resolve(const struct molt_module *m, struct route_conf *rc,
    const char *cfgpath, struct conf_error *err)
{
	const struct molt_conf_key *k;
	struct molt_conf *conf;
	size_t n = 0, i;

	for (k = m->conf_keys; k != NULL && k->name != NULL; k++) {
		const struct molt_conf_key *e;

		/*
		 * A key named as molt's own route keys would be read by both,
		 * and one declared twice has its value checked against the
		 * second declaration's type: the module's bug, said as such.
		 */
		if (strcmp(k->name, "module") == 0 ||
		    strcmp(k->name, "methods") == 0) {
			conf_errorf(err, rc->section->file, rc->section->line,
			    "[route %s] module %s declares a key '%s', which is "
			    "molt's own route key", rc->prefix, m->name, k->name);
			return NULL;
		}
		for (e = m->conf_keys; e != k; e++)
			if (strcmp(e->name, k->name) == 0) {
				conf_errorf(err, rc->section->file, rc->section->line,
				    "[route %s] module %s declares the key '%s' twice",
				    rc->prefix, m->name, k->name);
				return NULL;
			}
		n++;
	}
	conf = calloc(1, sizeof(*conf) + n * sizeof(struct conf_val));
	if (conf == NULL) {
		conf_errorf(err, cfgpath, 0, "out of memory");
		return NULL;
	}
	conf->route = rc->prefix;
	conf->n = n;
	conf->v = (struct conf_val *)(conf + 1);
	for (i = 0, k = m->conf_keys; i < n; i++, k++) {
		struct conf_val *v = &conf->v[i];
		struct conf_kv *kv = NULL, *mkv = NULL;
		unsigned where = k->flags & (MOLT_CONF_MODULE | MOLT_CONF_ROUTE);
		const struct conf_section *from = NULL;
		long long num;

		v->key = k->name;
		v->type = k->type;
		if ((kv = conf_get(rc->section, k->name)) != NULL) {
			from = rc->section;
			if (where == MOLT_CONF_MODULE) {
				conf_errorf(err, from->file, kv->line, "%s: this key of "
				    "module %s belongs in [module %s], not in a route",
				    k->name, m->name, m->name);
				goto fail;
			}
		}
		/*
		 * The [module] value is looked up (and so marked used) and
		 * checked even where the route overrides it: a declared key is
		 * known, and must not be reported unknown by
		 * config_check_unused() because every route sets its own.
		 */
		if (rc->module_section != NULL &&
		    (mkv = conf_get(rc->module_section, k->name)) != NULL) {
			if (where == MOLT_CONF_ROUTE) {
				conf_errorf(err, rc->module_section->file, mkv->line,
				    "%s: this key of module %s belongs in each "
				    "[route], not in [module %s]", k->name, m->name,
				    m->name);
				goto fail;
			}
			if (kv != NULL && module_parse_value(k->type, mkv->value,
			    &num) == -1) {
				conf_errorf(err, rc->module_section->file, mkv->line,
				    "%s: expected %s, got '%s'", k->name,
				    module_type_name(k->type), mkv->value);
				goto fail;
			}
			if (kv == NULL) {
				kv = mkv;
				from = rc->module_section;
			}
		}
		if (kv != NULL) {
			v->text = kv->value;
			v->file = from->file;
			v->line = kv->line;
		} else {
			v->text = k->def;
			v->file = "";
			v->line = 0;
		}
		if (v->text == NULL) {
			if (k->flags & MOLT_CONF_REQUIRED) {
				conf_errorf(err, rc->section->file, rc->section->line,
				    "[route %s] module %s needs %s = ... (%s)", rc->prefix,
				    m->name, k->name, k->help ? k->help : "required");
				goto fail;
			}
			continue;
		}
		if (module_parse_value(k->type, v->text, &v->num) == -1) {
			if (kv != NULL)
				conf_errorf(err, v->file, v->line, "%s: expected %s, "
				    "got '%s'", k->name, module_type_name(k->type), v->text);
			else
				conf_errorf(err, cfgpath, 0, "module %s: default of %s "
				    "('%s') is not %s", m->name, k->name, v->text,
				    module_type_name(k->type));
			goto fail;
		}
	}
	return conf;
fail:
	free(conf);
	return NULL;
}

int
module_check_all(struct molt_config *cfg, struct module **mods,
    struct conf_error *err)
{
	struct route_conf *rc;
	struct conf_section *s;
	struct module *mod;
	char msg[1536];

	*mods = NULL;
	for (rc = cfg->routes; rc != NULL; rc = rc->next) {
		struct molt_conf *conf;
		struct binding *b;
		struct conf_kv *kv = conf_get(rc->section, "module");
		int line = kv ? kv->line : rc->section->line;

		if ((mod = module_lookup(*mods, rc->module)) == NULL) {
			module_step(rc->section->file, line, "while loading "
			    "module %s", rc->module);
			mod = module_load(cfg->server.modules_dir, rc->module, msg,
			    sizeof(msg));
			if (mod == NULL) {
				conf_errorf(err, rc->section->file, line, "%s", msg);
				goto fail;
			}
			mod->next = *mods;
			*mods = mod;
		}
		conf = module_resolve(mod->m, rc, cfg->path, err);
		if (conf == NULL)
			goto fail;
		if ((b = calloc(1, sizeof(*b))) == NULL) {
			free(conf);
			conf_errorf(err, cfg->path, 0, "out of memory");
			goto fail;
		}
		b->rc = rc;
		b->conf = conf;
		b->next = bindings;
		bindings = b;
		if (mod->m->check != NULL) {
			module_step(rc->section->file, rc->section->line,
			    "in the check hook of module %s for [route %s]",
			    mod->name, rc->prefix);
			msg[0] = '\0';
			if (mod->m->check(conf, msg, sizeof(msg)) != 0) {
				/* The module may have filled it to the brim. */
				msg[sizeof(msg) - 1] = '\0';
				conf_errorf(err, rc->section->file, rc->section->line,
				    "[route %s] module %s: %s", rc->prefix, mod->name,
				    msg[0] ? msg : "settings refused");
				goto fail;
			}
		}
	}
	/* A [module NAME] section nobody routes to is most likely a typo. */
	for (s = cfg->sections; s != NULL; s = s->next) {
		if (strcmp(s->kind, "module") != 0)
			continue;
		if (module_lookup(*mods, s->arg) == NULL) {
			conf_errorf(err, s->file, s->line, "[module %s] is not used by "
			    "any [route]", s->arg);
			goto fail;
		}
	}
	module_step_clear();
	return 0;
fail:
	module_step_clear();
	module_unload_all(*mods);
	*mods = NULL;
	return -1;
}

struct molt_conf *
module_conf_for(struct module *mods, struct route_conf *rc)
{
	struct binding *b;

	(void)mods;
	for (b = bindings; b != NULL; b = b->next)
		if (b->rc == rc)
			return b->conf;
	return NULL;
}

void
module_unload_all(struct module *mods)
{
	struct module *next;
	struct binding *b;

	while ((b = bindings) != NULL) {
		bindings = b->next;
		free(b->conf);
		free(b);
	}
	for (; mods != NULL; mods = next) {
		next = mods->next;
		/* Modules may have registered atexit handlers; keep them mapped. */
		free(mods->name);
		free(mods->path);
		free(mods);
	}
}

/* ------------------------------------------------------------------ */
/* The settings API for modules                                        */

static const struct conf_val *
module_val(const molt_conf *conf, const char *key)
{
	size_t i;

	if (conf == NULL)
		return NULL;
	for (i = 0; i < conf->n; i++)
		if (strcmp(conf->v[i].key, key) == 0)
			return &conf->v[i];
	molt_log(MOLT_LOG_ERROR, "route %s: a module asked for undeclared "
	    "config key '%s'", conf->route, key);
	return NULL;
}

const char *
molt_conf_str(const molt_conf *conf, const char *key)
{
	const struct conf_val *v = module_val(conf, key);

	return v ? v->text : NULL;
}

long long
molt_conf_int(const molt_conf *conf, const char *key)
{
	const struct conf_val *v = module_val(conf, key);

	return v && v->text ? v->num : 0;
}

int
molt_conf_bool(const molt_conf *conf, const char *key)
{
	const struct conf_val *v = module_val(conf, key);

	return v && v->text ? (int)v->num : 0;
}

const char *
molt_conf_where(const molt_conf *conf, const char *key, int *line)
{
	const struct conf_val *v = module_val(conf, key);

	if (line != NULL)
		*line = v ? v->line : 0;
	return v ? v->file : "";
}

/* cardlicctl: the auditors' tool.  One header for its files. */
#ifndef CARDLICCTL_H
#define CARDLICCTL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <sqlite3.h>

#define CTL_CONF_DEFAULT	"/etc/cardlicd/cardlicd.conf"
#define CTL_DB_DEFAULT		"/var/lib/cardlicd/audit.db"
#define CTL_CONTROL_DEFAULT	"/run/cardlicd/control"

/* Exit statuses: 0 found / passed, 1 found nothing / check failed. */
#define CTL_OK		0
#define CTL_NOTHING	1
#define CTL_USAGE	2

struct ctl {
	const char	*db_path;
	const char	*control;
	int		 local;		/* --local: show local time */
	const char	*station;	/* the configuration's [station] id */
	sqlite3		*db;
	char		 uri[4200];	/* how db was opened, for a second one */
	char		 broken[600];	/* ctl_open: the schema is not ours */
};

/* cardlicctl.c */
int	 ctl_open(struct ctl *);
void	 ctl_close(struct ctl *);
int	 ctl_fail(const char *, ...) __attribute__((format(printf, 1, 2)));
int	 ctl_usage(const char *);
const char *ctl_time(const struct ctl *, const char *);
sqlite3_stmt *ctl_prepare(struct ctl *, const char *);
int	 ctl_has_opt(int, char **, const char *);
const char *ctl_esc(const void *, size_t);
void	 ctl_put(const char *, size_t, int);
size_t	 ctl_unescape(const char *, char *);
void	 ctl_json_str(const void *, size_t);
int	 ctl_col_is(sqlite3_stmt *, int, const char *);

/* query.c */
int	cmd_list(struct ctl *, int, char **);
int	cmd_show(struct ctl *, int, char **);
int	cmd_export(struct ctl *, int, char **);
int	cmd_stats(struct ctl *, int, char **);
int	cmd_reconcile(struct ctl *, int, char **);

/* chain.c */
int	cmd_verify(struct ctl *, int, char **);
int	chain_verify_all(sqlite3 *, const char *, int, long *,
	    const uint8_t (*)[32], int);
/* A key row's reason, as verify, pubkey and --checkpoints read it. */
struct chain_keyrow {
	uint8_t	 pub[32];
	int	 endorsed;	/* a rotation: prev and e */
	uint8_t	 prev[32];
	uint8_t	 e[64];
	int	 v2;		/* its key's rows are signed v2 */
};
int	chain_key_reason(const void *, size_t, struct chain_keyrow *);

/* keys.c: the station's signing keys */
int	cmd_keygen(struct ctl *, int, char **);
int	cmd_pubkey(struct ctl *, int, char **);

/* vexport.c: verify --export */
int	vexport_verify(const char *, const uint8_t (*)[32], int);
int	cmd_merge(struct ctl *, int, char **);
int	cmd_backup(struct ctl *, int, char **);

/* checkpoint.c: verify --checkpoints */
int	checkpoint_add_source(const char *);
void	checkpoint_station(const char *);
int	checkpoint_sources(void);
int	checkpoint_verify(struct ctl *, const uint8_t (*)[32], int, int);

/* resolve.c */
int	cmd_resolve(struct ctl *, int, char **);
int	cmd_batch_count(struct ctl *, int, char **);

/* follow.c */
int	cmd_watch(struct ctl *, int, char **);
int	cmd_status(struct ctl *, int, char **);

extern const char *const	sql_migrations[];
extern const int		sql_migrations_count;
/* build/sqlschema.c (ctl/schemagen): each version's schema rows. */
extern const char *const *const	sql_schemas[];
extern const int		sql_schemas_count;

/* chain.c: merge's database, with migrations 1..upto */
int	chain_create_merged(sqlite3 *, int, char *, size_t);
/* schema.c */
/*
 * Every schema object but SQLite's statistics (ANALYZE's tables change
 * no answer: only which index answers, and verify reads every index).
 * Also what ctl/schemagen lists at build time.  The statistics are named
 * exactly, and only as tables: `LIKE 'sqlite_stat%'` also let through a
 * trigger named sqlitexstat_x (`_` matches any character), which dropped
 * the daemon's rows unseen; and a trigger may be given any name that
 * SQLite's own tables have, through PRAGMA writable_schema.
 */
#define SCHEMA_LIST	"SELECT type, name, tbl_name, coalesce(sql, '') FROM " \
	"sqlite_schema WHERE NOT (type = 'table' AND name = tbl_name AND " \
	"name IN ('sqlite_stat1', 'sqlite_stat2', 'sqlite_stat3', " \
	"'sqlite_stat4')) ORDER BY name, type"
int	schema_check(sqlite3 *, char *, size_t);
int	schema_integrity(struct ctl *);
struct schema_bg;
struct schema_bg *schema_integrity_start(struct ctl *);
int	schema_integrity_end(struct ctl *, struct schema_bg *);

#endif

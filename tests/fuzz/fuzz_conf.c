/*
 * The configuration parser: conf.c is included and its text parser runs
 * on the input in memory (conf_parse_text, then the whole-file checks of
 * conf_finish), as conf_load does after reading the file.  A pin-file is
 * pointed at a path that does not exist, so that the fuzzer never reads
 * the machine's files.  Checked: no crash or undefined behaviour; an
 * error names a line of the file and is one terminated string; a loaded
 * configuration holds only terminated strings, absolute paths, counts
 * within their bounds, rules whose ATR bits lie inside their mask, a PIN
 * of 4 to 64 bytes; and it prints and classifies without trouble.
 */
#include "../../daemon/conf.c"
#include "stubs.h"

static void
fc_string(const char *s, size_t n, const char *what)
{
	FUZZ_CHECK(memchr(s, '\0', n) != NULL, "%s not terminated", what);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static FILE *devnull;
	struct conf_parse p;
	struct conf *c;
	char *text, err[1024];
	size_t i, lines = 1;
	int k, rc;

	if (size > CONF_FILE_MAX)
		return 0;
	if (devnull == NULL)
		devnull = fopen("/dev/null", "w");
	for (i = 0; i < size; i++)
		lines += data[i] == '\n';
	memset(&p, 0, sizeof(p));
	p.flags = CONF_CHECK_ONLY;
	p.section = -1;
	p.c = c = conf_new();
	FUZZ_CHECK(c != NULL, "conf_new");
	snprintf(c->path, sizeof(c->path), "/fuzz/cardlicd.conf");
	text = malloc(size + 1);
	memcpy(text, data, size);
	text[size] = '\0';
	conf_parse_text(&p, text, size);
	free(text);
	if (p.err_line != 0) {
		FUZZ_CHECK(p.err_line > 0 && (size_t)p.err_line <= lines,
		    "error at line %d of %zu", p.err_line, lines);
		fc_string(p.err, sizeof(p.err), "error");
		FUZZ_CHECK(p.err[0] != '\0', "empty error");
		conf_unref(c);
		return 0;
	}
	if (c->pin_source == PIN_FILE)
		snprintf(c->pin_where, sizeof(c->pin_where),
		    "/nonexistent/cardlicd-fuzz/pin");
	p.st.st_mode = S_IFREG | 0600;
	rc = conf_finish(&p, err, sizeof(err));
	if (rc != 0) {
		fc_string(err, sizeof(err), "finish error");
		conf_unref(c);
		return 0;
	}
	fc_string(c->station, sizeof(c->station), "station");
	fc_string(c->database, sizeof(c->database), "database");
	fc_string(c->timezone, sizeof(c->timezone), "timezone");
	fc_string(c->module, sizeof(c->module), "module");
	fc_string(c->user, sizeof(c->user), "user");
	fc_string(c->control, sizeof(c->control), "control");
	fc_string(c->pin_where, sizeof(c->pin_where), "pin source");
	FUZZ_CHECK(c->database[0] == '/' && c->module[0] == '/' &&
	    c->control[0] == '/', "a relative path");
	FUZZ_CHECK(c->pin_source != PIN_NONE, "no PIN source");
	FUZZ_CHECK(c->pin_source != PIN_CONF || (c->pin_len >= 4 &&
	    c->pin_len <= PIN_MAX), "PIN of %zu bytes", c->pin_len);
	FUZZ_CHECK(c->n_rules >= 0 && c->n_rules <= CONF_MAX_RULES &&
	    c->n_include >= 0 && c->n_include <= CONF_MAX_FILTERS &&
	    c->n_exclude >= 0 && c->n_exclude <= CONF_MAX_FILTERS &&
	    c->n_maps >= 0 && c->n_maps <= CONF_MAX_MAPS, "counts");
	FUZZ_CHECK(c->renew_days >= 0 && c->renew_days <= 3650 &&
	    c->start_offset >= 0 && c->start_offset <= 366, "ranges");
	FUZZ_CHECK((c->policy != START_FIXED && c->policy != START_LATER_OF) ||
	    c->start_date >= 0, "policy %d without a date", c->policy);
	for (k = 0; k < c->n_include; k++)
		fc_string(c->include[k], READER_MAX, "include");
	for (k = 0; k < c->n_exclude; k++)
		fc_string(c->exclude[k], READER_MAX, "exclude");
	for (k = 0; k < c->n_maps; k++) {
		fc_string(c->maps[k].reader, READER_MAX, "map reader");
		fc_string(c->maps[k].desc, sizeof(c->maps[k].desc), "map desc");
		FUZZ_CHECK(c->maps[k].reader[0] != '\0', "empty map reader");
	}
	for (k = 0; k < c->n_rules; k++) {
		const struct rule *r = &c->rules[k];

		FUZZ_CHECK(r->kind == KIND_BATCH || r->kind == KIND_TARGET ||
		    r->kind == KIND_IGNORE, "rule kind %d", r->kind);
		if (!r->by_atr) {
			fc_string(r->pattern, sizeof(r->pattern), "pattern");
			continue;
		}
		FUZZ_CHECK(r->atr_len >= 1 && r->atr_len <= ATR_MAX,
		    "ATR of %zu bytes", r->atr_len);
		for (i = 0; i < r->atr_len; i++)
			FUZZ_CHECK((r->atr[i] & ~r->mask[i]) == 0,
			    "rule %d byte %zu outside its mask", k, i);
		/* Its own ATR is classified (by it or a rule before). */
		FUZZ_CHECK(classify_card(c, "", r->atr, r->atr_len) !=
		    KIND_UNKNOWN, "rule %d does not match its own ATR", k);
	}
	for (i = 0; i < (size_t)p.n_warn; i++)
		fc_string(p.warn[i], sizeof(p.warn[i]), "warning");
	conf_print(c, devnull);
	(void)classify_reader_wanted(c, "Fuzz Reader 00 00");
	(void)conf_start_date(c, date_to_days(2026, 1, 31));
	conf_unref(c);
	return 0;
}

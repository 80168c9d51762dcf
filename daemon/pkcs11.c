/*
 * The vendor middleware, loaded through p11-kit and called through its own
 * CK_FUNCTION_LIST: the license attribute lives on object handle 0, which
 * is CK_INVALID_HANDLE in standard PKCS#11, so no wrapper may stand
 * between us and the module.
 */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <p11-kit/p11-kit.h>
#include <p11-kit/pkcs11.h>

#include "cardlicd.h"

static CK_FUNCTION_LIST	*p11;

int
p11_load(const char *path, char *err, size_t len)
{
	CK_C_INITIALIZE_ARGS args;
	CK_RV rv;

	/* Unmanaged: p11-kit must hand us the module's own function list. */
	p11 = p11_kit_module_load(path, P11_KIT_MODULE_UNMANAGED);
	if (p11 == NULL) {
		snprintf(err, len, "%s: cannot load the PKCS#11 module: %s",
		    path, p11_kit_message() != NULL ? p11_kit_message() :
		    "unknown error");
		return -1;
	}
	memset(&args, 0, sizeof(args));
	args.flags = CKF_OS_LOCKING_OK;
	rv = p11->C_Initialize(&args);
	if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		snprintf(err, len, "%s: C_Initialize: %s", path,
		    p11_rv_name(rv));
		p11_kit_module_release(p11);
		p11 = NULL;
		return -1;
	}
	return 0;
}

void
p11_unload(void)
{
	if (p11 == NULL)
		return;
	p11->C_Finalize(NULL);
	p11_kit_module_release(p11);
	p11 = NULL;
}

const char *
p11_rv_name(unsigned long rv)
{
	static __thread char buf[32];

	switch (rv) {
	case CKR_OK: return "CKR_OK";
	case CKR_GENERAL_ERROR: return "CKR_GENERAL_ERROR";
	case CKR_ARGUMENTS_BAD: return "CKR_ARGUMENTS_BAD";
	case CKR_ATTRIBUTE_TYPE_INVALID: return "CKR_ATTRIBUTE_TYPE_INVALID";
	case CKR_ATTRIBUTE_VALUE_INVALID:
		return "CKR_ATTRIBUTE_VALUE_INVALID";
	case CKR_BUFFER_TOO_SMALL: return "CKR_BUFFER_TOO_SMALL";
	case CKR_DEVICE_ERROR: return "CKR_DEVICE_ERROR";
	case CKR_DEVICE_REMOVED: return "CKR_DEVICE_REMOVED";
	case CKR_FUNCTION_FAILED: return "CKR_FUNCTION_FAILED";
	case CKR_OBJECT_HANDLE_INVALID: return "CKR_OBJECT_HANDLE_INVALID";
	case CKR_PIN_INCORRECT: return "CKR_PIN_INCORRECT";
	case CKR_PIN_LEN_RANGE: return "CKR_PIN_LEN_RANGE";
	case CKR_PIN_LOCKED: return "CKR_PIN_LOCKED";
	case CKR_SESSION_HANDLE_INVALID: return "CKR_SESSION_HANDLE_INVALID";
	case CKR_SESSION_READ_ONLY: return "CKR_SESSION_READ_ONLY";
	case CKR_SLOT_ID_INVALID: return "CKR_SLOT_ID_INVALID";
	case CKR_TOKEN_NOT_PRESENT: return "CKR_TOKEN_NOT_PRESENT";
	case CKR_TOKEN_NOT_RECOGNIZED: return "CKR_TOKEN_NOT_RECOGNIZED";
	case CKR_USER_ALREADY_LOGGED_IN: return "CKR_USER_ALREADY_LOGGED_IN";
	case CKR_USER_NOT_LOGGED_IN: return "CKR_USER_NOT_LOGGED_IN";
	case CKR_CRYPTOKI_NOT_INITIALIZED:
		return "CKR_CRYPTOKI_NOT_INITIALIZED";
	default:
		snprintf(buf, sizeof(buf), "CKR_0x%08lX", rv);
		return buf;
	}
}

/* A slotDescription's length once its space padding is dropped. */
static size_t
p11_desc_len(const unsigned char desc[64])
{
	size_t n = 64;

	while (n > 0 && desc[n - 1] == ' ')
		n--;
	return n;
}

/*
 * The slot of a reader.  A map in [readers] decides when there is one.
 * Otherwise the slot whose description is the reader's name; a name over
 * 64 bytes appears cut in every slot that shares its first 64 bytes, and
 * a cut match is taken only when exactly one slot has that description.
 * Two slots with the same description are never a guess: an error names
 * them and says how to map the reader.
 */
static CK_RV
p11_pick_slot(const struct conf *c, const char *reader, CK_SLOT_ID *out,
    char *err, size_t len)
{
	const struct reader_map *m = NULL;
	CK_SLOT_ID ids[64], hit[8];
	CK_SLOT_INFO si;
	CK_ULONG n = 64, i;
	size_t rl = strlen(reader), dl, k = 0, nhit = 0;
	char list[200];
	int cut = 0, j;
	CK_RV rv;

	for (j = 0; c != NULL && j < c->n_maps; j++)
		if (strcmp(c->maps[j].reader, reader) == 0)
			m = &c->maps[j];
	if ((rv = p11->C_GetSlotList(CK_FALSE, ids, &n)) != CKR_OK) {
		snprintf(err, len, "C_GetSlotList: %s", p11_rv_name(rv));
		return rv;
	}
	for (i = 0; i < n; i++) {
		if (m != NULL && m->by_slot) {
			if (ids[i] != m->slot)
				continue;
		} else if (p11->C_GetSlotInfo(ids[i], &si) != CKR_OK)
			continue;
		else if (m != NULL) {
			dl = p11_desc_len(si.slotDescription);
			if (dl != strlen(m->desc) || memcmp(si.slotDescription,
			    m->desc, dl) != 0)
				continue;
		} else {
			dl = p11_desc_len(si.slotDescription);
			if (dl == 0 || dl > rl || memcmp(si.slotDescription,
			    reader, dl) != 0)
				continue;
			if (dl < rl && dl < 64)
				continue;	/* another, shorter name */
			cut |= dl < rl;
		}
		if (nhit < sizeof(hit) / sizeof(hit[0]))
			hit[nhit] = ids[i];
		nhit++;
	}
	if (nhit == 1) {
		*out = hit[0];
		return CKR_OK;
	}
	if (nhit == 0) {
		snprintf(err, len, "no PKCS#11 slot for this reader%s",
		    m != NULL ? " as mapped in [readers]" : "");
		return CKR_TOKEN_NOT_PRESENT;
	}
	list[0] = '\0';
	for (i = 0; i < nhit && i < sizeof(hit) / sizeof(hit[0]); i++)
		k += (size_t)snprintf(list + k, k < sizeof(list) ?
		    sizeof(list) - k : 0, "%s%lu", i ? ", " : "",
		    (unsigned long)hit[i]);
	snprintf(err, len, "%zu PKCS#11 slots (IDs %s) match this reader%s; "
	    "cannot tell which is its card, so none is used: add to [readers] "
	    "\"map = %s -> slot-id N\" (see cardlicd.conf(5))", nhit, list,
	    cut ? " once its name is cut at 64 bytes" : "", reader);
	return CKR_SLOT_ID_INVALID;
}

/*
 * Each reader's slot, as the last full look found it.  The look costs a
 * C_GetSlotList and a C_GetSlotInfo per slot, each a trip to pcscd in a
 * PC/SC middleware, for every card (issue 12).  Its answer holds while
 * the set of readers and the configuration's [readers] map stay the same:
 * the watcher tells of the changes of the one (p11_readers_changed), and
 * the other comes with a new conf generation.  A slot that then fails is
 * looked up again, once.
 */
struct p11_known {
	char		reader[READER_MAX];
	CK_SLOT_ID	id;
	unsigned	readers_gen;
	unsigned long	conf_gen;
};
static pthread_mutex_t	p11_known_lock = PTHREAD_MUTEX_INITIALIZER;
static struct p11_known	p11_known[64];
static unsigned		p11_readers_gen;	/* 0: not listed yet */

/* The watcher: the set of readers changed, or pcscd went away. */
void
p11_readers_changed(void)
{
	__atomic_add_fetch(&p11_readers_gen, 1, __ATOMIC_SEQ_CST);
}

static unsigned
p11_readers_now(void)
{
	return __atomic_load_n(&p11_readers_gen, __ATOMIC_SEQ_CST);
}

static unsigned long
p11_conf_gen(const struct conf *c)
{
	return c != NULL ? c->generation : 0;
}

static int
p11_known_slot(const struct conf *c, const char *reader, CK_SLOT_ID *id)
{
	unsigned gen = p11_readers_now();
	size_t i;
	int hit = 0;

	pthread_mutex_lock(&p11_known_lock);
	for (i = 0; i < sizeof(p11_known) / sizeof(p11_known[0]) && !hit; i++)
		if (p11_known[i].readers_gen == gen && gen != 0 &&
		    p11_known[i].conf_gen == p11_conf_gen(c) &&
		    strcmp(p11_known[i].reader, reader) == 0) {
			*id = p11_known[i].id;
			hit = 1;
		}
	pthread_mutex_unlock(&p11_known_lock);
	return hit;
}

/* Kept in the reader's entry, or in one that an older look left. */
static void
p11_known_set(const struct conf *c, const char *reader, CK_SLOT_ID id,
    unsigned gen)
{
	size_t i, n = sizeof(p11_known) / sizeof(p11_known[0]), at = n;
	unsigned now = p11_readers_now();

	pthread_mutex_lock(&p11_known_lock);
	for (i = 0; i < n; i++) {
		if (strcmp(p11_known[i].reader, reader) == 0) {
			at = i;
			break;
		}
		if (at == n && p11_known[i].readers_gen != now)
			at = i;
	}
	if (at < n) {
		snprintf(p11_known[at].reader, READER_MAX, "%s", reader);
		p11_known[at].id = id;
		p11_known[at].readers_gen = gen;
		p11_known[at].conf_gen = p11_conf_gen(c);
	}
	pthread_mutex_unlock(&p11_known_lock);
}

/*
 * The token in the reader's slot.  CKR_TOKEN_NOT_PRESENT when no slot or
 * no token; err says what went wrong, for the operator's line.
 */
unsigned long
p11_find_token(const struct conf *c, const char *reader, struct token *t,
    char *err, size_t len)
{
	CK_TOKEN_INFO ti;
	CK_SLOT_ID id;
	CK_RV rv;
	unsigned gen;

	if (p11 == NULL) {
		snprintf(err, len, "the PKCS#11 module is not loaded");
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	if (p11_known_slot(c, reader, &id)) {
		if ((rv = p11->C_GetTokenInfo(id, &ti)) == CKR_OK)
			goto found;
		/* Maybe not the slot it was: look again, from the list. */
	}
	/* Read before the look: a change during it makes the answer old. */
	gen = p11_readers_now();
	if ((rv = p11_pick_slot(c, reader, &id, err, len)) != CKR_OK)
		return rv;
	p11_known_set(c, reader, id, gen);
	if ((rv = p11->C_GetTokenInfo(id, &ti)) != CKR_OK) {
		snprintf(err, len, "cannot read the token (%s)",
		    p11_rv_name(rv));
		return rv;
	}
found:
	t->slot = id;
	memcpy(t->model, ti.model, FIELD_LEN);
	memcpy(t->serial, ti.serialNumber, FIELD_LEN);
	t->flags = ti.flags;
	return CKR_OK;
}

/*
 * The token in a slot now: what the job compares with the card it was
 * started for (invariant 10), and the PIN's flags as they are now.
 */
unsigned long
p11_token_now(unsigned long slot, struct token *t)
{
	CK_TOKEN_INFO ti;
	CK_RV rv;

	if (p11 == NULL)
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	if ((rv = p11->C_GetTokenInfo(slot, &ti)) != CKR_OK)
		return rv;
	t->slot = slot;
	memcpy(t->model, ti.model, FIELD_LEN);
	memcpy(t->serial, ti.serialNumber, FIELD_LEN);
	t->flags = ti.flags;
	return CKR_OK;
}

int
p11_pin_locked(unsigned long flags)
{
	return (flags & CKF_USER_PIN_LOCKED) != 0;
}

int
p11_pin_final_try(unsigned long flags)
{
	return (flags & CKF_USER_PIN_FINAL_TRY) != 0;
}

/* A wrong PIN was tried since the last good login (PKCS#11 2.40, 3.2). */
int
p11_pin_tried_wrong(unsigned long flags)
{
	return (flags & (CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY |
	    CKF_USER_PIN_LOCKED)) != 0;
}

unsigned long
p11_open(unsigned long slot, unsigned long *h)
{
	CK_SESSION_HANDLE s;
	CK_RV rv;

	rv = p11->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION,
	    NULL, NULL, &s);
	*h = s;
	return rv;
}

void
p11_close(unsigned long h)
{
	p11->C_CloseSession(h);
}

/*
 * The 19-byte license status.  The buffer has room to spare, so that a
 * module that writes past the length it was given does not reach our
 * stack; a status of any other length is refused, with its length in
 * *len for the reason.
 */
unsigned long
p11_status(unsigned long h, uint8_t st[STATUS_LEN], unsigned long *len)
{
	uint8_t buf[256];
	CK_ATTRIBUTE a = { LICENSE_ATTR, buf, STATUS_LEN };
	CK_RV rv;

	memset(buf, 0, sizeof(buf));
	rv = p11->C_GetAttributeValue(h, 0, &a, 1);
	*len = a.ulValueLen;
	if (rv != CKR_OK)
		return rv;
	if (a.ulValueLen != STATUS_LEN)
		return CKR_ATTRIBUTE_VALUE_INVALID;
	memcpy(st, buf, STATUS_LEN);
	return CKR_OK;
}

unsigned long
p11_login(unsigned long h, const char *pin, size_t len)
{
	return p11->C_Login(h, CKU_USER, (CK_UTF8CHAR *)pin, len);
}

unsigned long
p11_logout(unsigned long h)
{
	return p11->C_Logout(h);
}

unsigned long
p11_load_license(unsigned long h, const uint8_t *license)
{
	CK_ATTRIBUTE a = { LICENSE_ATTR, (void *)license, LICENSE_LEN };

	return p11->C_SetAttributeValue(h, 0, &a, 1);
}

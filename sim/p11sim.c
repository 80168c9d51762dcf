/*
 * cardlic-sim-p11.so: the simulated vendor middleware.  A PKCS#11 v2.40
 * module that reaches the simulated target cards over PC/SC, with the
 * vendor's license attribute 0x8000006A on object handle 0.
 *
 * Slots are PC/SC readers; their IDs are stable for the module's life (a
 * reader that goes and comes back keeps its ID).  Each slot has its own
 * SCARDCONTEXT and lock, so that jobs on different readers run in parallel.
 * Login state belongs to the token, as PKCS#11 says; a card change (pulled,
 * reset) invalidates every session of its slot.
 *
 * A slot knows which card it talks to by pcscd's event counter for its
 * reader (the high 16 bits of dwEventState, bumped at each insertion and
 * removal): a handle kept from an earlier card is never used for the next
 * one, and whether the card is one of ours is asked once per card.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <PCSC/winscard.h>
#include <PCSC/pcsclite.h>

#include <p11-kit/pkcs11.h>

#include "simproto.h"

#define P11_MAX_SLOTS		32
#define P11_MAX_SESSIONS	256
#define P11_EXPORT		__attribute__((visibility("default")))

/*
 * used and present are read without the module lock (C_GetSlotList,
 * C_GetTokenInfo, C_OpenSession): they are written and read atomically,
 * and present changes only when the reader really comes or goes.
 */
struct p11_slot {
	int		used;		/* atomic; 0 to 1 once, reader set */
	int		present;	/* atomic; the reader exists now */
	char		reader[MAX_READERNAME];
	pthread_mutex_t	lock;
	SCARDCONTEXT	ctx;
	int		has_ctx;
	SCARDHANDLE	card;
	int		connected;
	DWORD		card_events;	/* the reader's counter at connect */
	DWORD		proto;
	unsigned long	gen;		/* bumped at each card change */
	int		logged_in;
	int		sessions;
	/* Is the card ours?  Known for one card; module lock. */
	unsigned long	probe_epoch;	/* 0: not known */
	DWORD		probe_events;
	int		probe_ours;
};

struct p11_session {
	int		used;
	CK_SLOT_ID	slot;
	unsigned long	gen;
	CK_FLAGS	flags;
	int		finding;
};

static pthread_mutex_t		p11_lock = PTHREAD_MUTEX_INITIALIZER;
static int			p11_ready;
static SCARDCONTEXT		p11_ctx;
static int			p11_has_ctx;
static struct p11_slot		p11_slots[P11_MAX_SLOTS];
static struct p11_session	p11_sessions[P11_MAX_SESSIONS];
static CK_FUNCTION_LIST	p11_functions;
/*
 * Bumped (module lock) whenever pcscd is seen gone: its event counters
 * start again from 0, so what was learnt under the old one is void.
 */
static unsigned long		p11_epoch = 1;

static int
p11_get(const int *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static void
p11_set(int *p, int v)
{
	__atomic_store_n(p, v, __ATOMIC_RELEASE);
}

static void
p11_pad(unsigned char *dst, size_t n, const char *src)
{
	size_t k = strlen(src);

	memset(dst, ' ', n);
	memcpy(dst, src, k < n ? k : n);
}

static int
p11_gone(LONG rv)
{
	return rv == SCARD_W_REMOVED_CARD || rv == SCARD_E_NO_SMARTCARD ||
	    rv == SCARD_W_RESET_CARD || rv == SCARD_E_NOT_TRANSACTED ||
	    rv == SCARD_E_READER_UNAVAILABLE || rv == SCARD_W_UNPOWERED_CARD ||
	    rv == SCARD_W_UNRESPONSIVE_CARD || rv == SCARD_E_UNKNOWN_READER;
}

static int
p11_no_service(LONG rv)
{
	return rv == SCARD_E_NO_SERVICE || rv == SCARD_F_COMM_ERROR ||
	    rv == SCARD_E_INVALID_HANDLE || rv == SCARD_E_SERVICE_STOPPED;
}

/* Forget the card in a slot: its sessions are now stale. Slot locked. */
static void
p11_slot_drop(struct p11_slot *s, int card_gone)
{
	if (s->connected)
		SCardDisconnect(s->card, SCARD_LEAVE_CARD);
	s->connected = 0;
	s->logged_in = 0;
	if (card_gone)
		s->gen++;
}

/* pcscd went away (or restarted): forget what its counters said. */
static void
p11_service_lost(void)
{
	pthread_mutex_lock(&p11_lock);
	p11_epoch++;
	pthread_mutex_unlock(&p11_lock);
}

/* Slot locked; module locked only when lost is 0 (C_Finalize). */
static void
p11_slot_close_ctx(struct p11_slot *s, int lost)
{
	p11_slot_drop(s, 1);
	if (s->has_ctx) {
		SCardReleaseContext(s->ctx);
		if (lost)
			p11_service_lost();
	}
	s->has_ctx = 0;
}

/* The slot's context died with pcscd.  Slot locked. */
static void
p11_slot_release_ctx(struct p11_slot *s)
{
	p11_slot_close_ctx(s, 1);
}

/* Remember whether the card of this event count is ours.  Slot locked. */
static void
p11_slot_learn(struct p11_slot *s, unsigned long epoch, DWORD events,
    int ours)
{
	pthread_mutex_lock(&p11_lock);
	if (epoch == p11_epoch) {
		s->probe_epoch = epoch;
		s->probe_events = events;
		s->probe_ours = ours;
	}
	pthread_mutex_unlock(&p11_lock);
}

/*
 * The reader's state now: SCARD_S_SUCCESS with its event counter and
 * whether a card is there.  Slot locked, context established.
 */
static LONG
p11_slot_state(struct p11_slot *s, DWORD *events, int *card)
{
	SCARD_READERSTATE rs;
	LONG rv;

	memset(&rs, 0, sizeof(rs));
	rs.szReader = s->reader;
	rs.dwCurrentState = SCARD_STATE_UNAWARE;
	rv = SCardGetStatusChange(s->ctx, 0, &rs, 1);
	if (rv != SCARD_S_SUCCESS)
		return rv;
	*events = rs.dwEventState >> 16;
	*card = (rs.dwEventState & SCARD_STATE_PRESENT) != 0 &&
	    !(rs.dwEventState & SCARD_STATE_MUTE);
	return SCARD_S_SUCCESS;
}

/*
 * Connect to the card in the slot and select the target application.
 * CKR_TOKEN_NOT_PRESENT when there is no card, or not one of ours.  A
 * handle kept from an earlier card (the reader's event counter moved) is
 * dropped first, and with it that card's sessions.  Whether a card is ours
 * is asked once per card: a batch card is not sent our SELECT each time
 * somebody looks at the slot list.  Slot locked.
 */
static CK_RV
p11_slot_connect(struct p11_slot *s)
{
	static const BYTE sel[] = { 0x00, 0xA4, 0x04, 0x00, TGT_AID_LEN,
	    0xF0, 0x43, 0x4C, 0x53, 0x49, 0x4D, 0x54, 0x47 };
	BYTE resp[4];
	DWORD rlen = sizeof(resp), events = 0;
	LONG rv = SCARD_E_NO_SERVICE, trv;
	unsigned long epoch;
	int tries, card = 0, known, ours;

	/* Twice: a context from before a pcscd restart is dead. */
	for (tries = 0; tries < 2; tries++) {
		if (!s->has_ctx) {
			rv = SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL,
			    NULL, &s->ctx);
			if (rv != SCARD_S_SUCCESS)
				return CKR_DEVICE_ERROR;
			s->has_ctx = 1;
		}
		rv = p11_slot_state(s, &events, &card);
		if (!p11_no_service(rv))
			break;
		p11_slot_release_ctx(s);
	}
	if (rv != SCARD_S_SUCCESS)
		return p11_no_service(rv) ? CKR_DEVICE_ERROR :
		    CKR_TOKEN_NOT_PRESENT;
	if (s->connected && (!card || events != s->card_events))
		p11_slot_drop(s, 1);	/* pulled, or another card now */
	if (!card)
		return CKR_TOKEN_NOT_PRESENT;
	if (s->connected)
		return CKR_OK;
	pthread_mutex_lock(&p11_lock);
	epoch = p11_epoch;
	known = s->probe_epoch == epoch && s->probe_events == events;
	ours = s->probe_ours;
	pthread_mutex_unlock(&p11_lock);
	if (known && !ours)
		return CKR_TOKEN_NOT_PRESENT;
	rv = SCardConnect(s->ctx, s->reader, SCARD_SHARE_SHARED,
	    SCARD_PROTOCOL_T0 | SCARD_PROTOCOL_T1, &s->card, &s->proto);
	if (rv != SCARD_S_SUCCESS) {
		if (p11_no_service(rv)) {
			p11_slot_release_ctx(s);
			return CKR_DEVICE_ERROR;
		}
		return CKR_TOKEN_NOT_PRESENT;
	}
	s->connected = 1;
	s->card_events = events;
	/*
	 * In a transaction: another program (the daemon's batch code) may be
	 * in the middle of its own exchange with this card.
	 */
	rv = SCardBeginTransaction(s->card);
	if (rv == SCARD_S_SUCCESS) {
		rv = SCardTransmit(s->card, s->proto == SCARD_PROTOCOL_T0 ?
		    SCARD_PCI_T0 : SCARD_PCI_T1, sel, sizeof(sel), NULL, resp,
		    &rlen);
		trv = SCardEndTransaction(s->card, SCARD_LEAVE_CARD);
		if (rv == SCARD_S_SUCCESS)
			rv = trv;
	}
	if (rv != SCARD_S_SUCCESS) {
		/* The card left while we asked: nothing learnt. */
		p11_slot_drop(s, 1);
		return CKR_TOKEN_NOT_PRESENT;
	}
	ours = rlen == 2 && resp[0] == 0x90 && resp[1] == 0x00;
	p11_slot_learn(s, epoch, events, ours);
	if (!ours) {
		p11_slot_drop(s, 1);
		return CKR_TOKEN_NOT_PRESENT;
	}
	return CKR_OK;
}

static CK_RV
p11_slot_failed(struct p11_slot *s, LONG rv)
{
	if (p11_no_service(rv))
		p11_slot_release_ctx(s);
	else
		p11_slot_drop(s, 1);
	return p11_gone(rv) || p11_no_service(rv) ? CKR_DEVICE_REMOVED :
	    CKR_DEVICE_ERROR;
}

/*
 * One APDU to the token.  Like a real middleware, each operation runs in
 * a PC/SC transaction that first selects our application again: another
 * program may have selected something else on the card in between.  A
 * card that went away, or no longer answers as ours, ends the slot's
 * sessions: CKR_DEVICE_REMOVED.  Slot locked.
 */
static CK_RV
p11_slot_apdu(struct p11_slot *s, const BYTE *cmd, DWORD len, BYTE *resp,
    DWORD *rlen, unsigned *sw)
{
	static const BYTE sel[] = { 0x00, 0xA4, 0x04, 0x00, TGT_AID_LEN,
	    0xF0, 0x43, 0x4C, 0x53, 0x49, 0x4D, 0x54, 0x47 };
	const SCARD_IO_REQUEST *pci;
	DWORD cap = *rlen + 2, n = cap;
	BYTE buf[300];
	LONG rv;

	if (cap > sizeof(buf))
		return CKR_GENERAL_ERROR;
	if (!s->connected)
		return CKR_DEVICE_REMOVED;
	pci = s->proto == SCARD_PROTOCOL_T0 ? SCARD_PCI_T0 : SCARD_PCI_T1;
	if ((rv = SCardBeginTransaction(s->card)) != SCARD_S_SUCCESS)
		return p11_slot_failed(s, rv);
	n = sizeof(buf);
	rv = SCardTransmit(s->card, pci, sel, sizeof(sel), NULL, buf, &n);
	if (rv == SCARD_S_SUCCESS && (n != 2 || buf[0] != 0x90 ||
	    buf[1] != 0x00)) {
		/* No status word, or not our card any more. */
		SCardEndTransaction(s->card, SCARD_LEAVE_CARD);
		p11_slot_drop(s, 1);
		return CKR_DEVICE_REMOVED;
	}
	if (rv == SCARD_S_SUCCESS) {
		n = cap;
		rv = SCardTransmit(s->card, pci, cmd, len, NULL, buf, &n);
	}
	if (rv != SCARD_S_SUCCESS)
		return p11_slot_failed(s, rv);
	SCardEndTransaction(s->card, SCARD_LEAVE_CARD);
	if (n < 2) {
		/*
		 * No status word: the exchange broke under us.  vpcd reports
		 * a card that vanished mid-APDU this way, before pcscd's next
		 * poll notices the removal.
		 */
		p11_slot_drop(s, 1);
		return CKR_DEVICE_REMOVED;
	}
	*sw = (unsigned)buf[n - 2] << 8 | buf[n - 1];
	*rlen = n - 2;
	memcpy(resp, buf, n - 2);
	return CKR_OK;
}

static CK_RV
p11_token_info(struct p11_slot *s, BYTE info[TGT_INFO_LEN])
{
	static const BYTE cmd[] = { TGT_CLA, TGT_INS_INFO, 0, 0,
	    TGT_INFO_LEN };
	DWORD rlen = TGT_INFO_LEN;
	unsigned sw;
	CK_RV rv;

	if ((rv = p11_slot_connect(s)) != CKR_OK)
		return rv;
	if ((rv = p11_slot_apdu(s, cmd, sizeof(cmd), info, &rlen, &sw)) !=
	    CKR_OK)
		return rv == CKR_DEVICE_REMOVED ? CKR_TOKEN_NOT_PRESENT : rv;
	if (sw != 0x9000 || rlen != TGT_INFO_LEN)
		return CKR_DEVICE_ERROR;
	return CKR_OK;
}

/*
 * Bring the slot table up to date with the readers pcscd has now.  New
 * readers get new IDs; known ones keep theirs.  Module locked.
 */
static void
p11_refresh(void)
{
	char *names = NULL, *p;
	DWORD len = SCARD_AUTOALLOCATE;
	LONG rv;
	int i, tries, seen[P11_MAX_SLOTS];

	for (tries = 0; tries < 2; tries++) {
		if (!p11_has_ctx) {
			if (SCardEstablishContext(SCARD_SCOPE_SYSTEM, NULL,
			    NULL, &p11_ctx) != SCARD_S_SUCCESS)
				break;
			p11_has_ctx = 1;
		}
		len = SCARD_AUTOALLOCATE;
		rv = SCardListReaders(p11_ctx, NULL, (LPSTR)&names, &len);
		if (rv == SCARD_S_SUCCESS || !p11_no_service(rv))
			break;
		/* pcscd restarted: a fresh context sees the new one. */
		SCardReleaseContext(p11_ctx);
		p11_has_ctx = 0;
		p11_epoch++;
		names = NULL;
	}
	/*
	 * Each slot's flag is written once, to its new value: a reader that
	 * stays is never seen absent for a moment by another thread.
	 */
	memset(seen, 0, sizeof(seen));
	for (p = names; p != NULL && *p != '\0'; p += strlen(p) + 1) {
		for (i = 0; i < P11_MAX_SLOTS; i++)
			if (p11_get(&p11_slots[i].used) &&
			    strcmp(p11_slots[i].reader, p) == 0)
				break;
		if (i == P11_MAX_SLOTS) {
			for (i = 0; i < P11_MAX_SLOTS; i++)
				if (!p11_get(&p11_slots[i].used))
					break;
			if (i == P11_MAX_SLOTS)
				continue;
			snprintf(p11_slots[i].reader,
			    sizeof(p11_slots[i].reader), "%s", p);
			p11_set(&p11_slots[i].used, 1);
		}
		seen[i] = 1;
	}
	for (i = 0; i < P11_MAX_SLOTS; i++)
		if (p11_get(&p11_slots[i].present) != seen[i])
			p11_set(&p11_slots[i].present, seen[i]);
	if (names != NULL)
		SCardFreeMemory(p11_ctx, names);
}

static struct p11_slot *
p11_slot(CK_SLOT_ID id)
{
	if (id >= P11_MAX_SLOTS || !p11_get(&p11_slots[id].used))
		return NULL;
	return &p11_slots[id];
}

/*
 * The session and its slot, locked; the caller unlocks s->lock.  A session
 * whose card has changed is closed here: CKR_DEVICE_REMOVED this once.
 */
static CK_RV
p11_session(CK_SESSION_HANDLE h, struct p11_session **out,
    struct p11_slot **slot)
{
	struct p11_session *ss;
	struct p11_slot *s;

	if (!p11_ready)
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	pthread_mutex_lock(&p11_lock);
	if (h == 0 || h > P11_MAX_SESSIONS || !p11_sessions[h - 1].used) {
		pthread_mutex_unlock(&p11_lock);
		return CKR_SESSION_HANDLE_INVALID;
	}
	ss = &p11_sessions[h - 1];
	s = &p11_slots[ss->slot];
	pthread_mutex_unlock(&p11_lock);
	pthread_mutex_lock(&s->lock);
	if (ss->gen != s->gen) {
		pthread_mutex_lock(&p11_lock);
		ss->used = 0;
		s->sessions--;
		pthread_mutex_unlock(&p11_lock);
		pthread_mutex_unlock(&s->lock);
		return CKR_DEVICE_REMOVED;
	}
	*out = ss;
	*slot = s;
	return CKR_OK;
}

CK_RV
C_Initialize(void *init_args)
{
	CK_C_INITIALIZE_ARGS *a = init_args;
	int i;

	if (a != NULL) {
		if (a->pReserved != NULL)
			return CKR_ARGUMENTS_BAD;
		/* We lock with pthreads; borrowed mutexes are not offered. */
		if (!(a->flags & CKF_OS_LOCKING_OK) && a->CreateMutex != NULL)
			return CKR_CANT_LOCK;
	}
	pthread_mutex_lock(&p11_lock);
	if (p11_ready) {
		pthread_mutex_unlock(&p11_lock);
		return CKR_CRYPTOKI_ALREADY_INITIALIZED;
	}
	memset(p11_slots, 0, sizeof(p11_slots));
	memset(p11_sessions, 0, sizeof(p11_sessions));
	for (i = 0; i < P11_MAX_SLOTS; i++)
		pthread_mutex_init(&p11_slots[i].lock, NULL);
	p11_ready = 1;
	p11_refresh();
	pthread_mutex_unlock(&p11_lock);
	return CKR_OK;
}

CK_RV
C_Finalize(void *reserved)
{
	int i;

	if (reserved != NULL)
		return CKR_ARGUMENTS_BAD;
	pthread_mutex_lock(&p11_lock);
	if (!p11_ready) {
		pthread_mutex_unlock(&p11_lock);
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	}
	for (i = 0; i < P11_MAX_SLOTS; i++) {
		p11_slot_close_ctx(&p11_slots[i], 0);
		pthread_mutex_destroy(&p11_slots[i].lock);
	}
	if (p11_has_ctx)
		SCardReleaseContext(p11_ctx);
	p11_has_ctx = 0;
	p11_ready = 0;
	pthread_mutex_unlock(&p11_lock);
	return CKR_OK;
}

CK_RV
C_GetInfo(CK_INFO *info)
{
	if (!p11_ready)
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	if (info == NULL)
		return CKR_ARGUMENTS_BAD;
	memset(info, 0, sizeof(*info));
	info->cryptokiVersion.major = 2;
	info->cryptokiVersion.minor = 40;
	p11_pad(info->manufacturerID, 32, "cardlicd simulation");
	p11_pad(info->libraryDescription, 32, "simulated license middleware");
	info->libraryVersion.major = 1;
	return CKR_OK;
}

CK_RV
C_GetSlotList(unsigned char token_present, CK_SLOT_ID *list,
    unsigned long *count)
{
	CK_SLOT_ID ids[P11_MAX_SLOTS];
	BYTE info[TGT_INFO_LEN];
	unsigned long n = 0;
	int i;

	if (!p11_ready)
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	if (count == NULL)
		return CKR_ARGUMENTS_BAD;
	pthread_mutex_lock(&p11_lock);
	p11_refresh();
	pthread_mutex_unlock(&p11_lock);
	for (i = 0; i < P11_MAX_SLOTS; i++) {
		if (!p11_get(&p11_slots[i].used) ||
		    !p11_get(&p11_slots[i].present))
			continue;
		if (token_present) {
			pthread_mutex_lock(&p11_slots[i].lock);
			if (p11_token_info(&p11_slots[i], info) != CKR_OK) {
				pthread_mutex_unlock(&p11_slots[i].lock);
				continue;
			}
			pthread_mutex_unlock(&p11_slots[i].lock);
		}
		ids[n++] = (CK_SLOT_ID)i;
	}
	if (list == NULL) {
		*count = n;
		return CKR_OK;
	}
	if (*count < n) {
		*count = n;
		return CKR_BUFFER_TOO_SMALL;
	}
	memcpy(list, ids, n * sizeof(ids[0]));
	*count = n;
	return CKR_OK;
}

/*
 * CKF_TOKEN_PRESENT means what C_OpenSession and C_GetTokenInfo will find:
 * a card that is ours, not merely a card.  The answer for the reader's
 * current card comes from what the slot learnt of it; only a card not
 * seen yet is probed, under the slot lock, once.
 */
static int
p11_slot_has_token(struct p11_slot *s)
{
	SCARD_READERSTATE rs;
	int known = 0, ours = 0;
	CK_RV rv;

	if (!p11_get(&s->present))
		return 0;
	pthread_mutex_lock(&p11_lock);
	if (p11_has_ctx) {
		memset(&rs, 0, sizeof(rs));
		rs.szReader = s->reader;
		rs.dwCurrentState = SCARD_STATE_UNAWARE;
		if (SCardGetStatusChange(p11_ctx, 0, &rs, 1) ==
		    SCARD_S_SUCCESS) {
			if (!(rs.dwEventState & SCARD_STATE_PRESENT))
				known = 1;
			else if (s->probe_epoch == p11_epoch &&
			    s->probe_events == rs.dwEventState >> 16) {
				known = 1;
				ours = s->probe_ours;
			}
		}
	}
	pthread_mutex_unlock(&p11_lock);
	if (known)
		return ours;
	pthread_mutex_lock(&s->lock);
	rv = p11_slot_connect(s);
	pthread_mutex_unlock(&s->lock);
	return rv == CKR_OK;
}

CK_RV
C_GetSlotInfo(CK_SLOT_ID id, CK_SLOT_INFO *info)
{
	struct p11_slot *s;

	if (!p11_ready)
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	if (info == NULL)
		return CKR_ARGUMENTS_BAD;
	if ((s = p11_slot(id)) == NULL)
		return CKR_SLOT_ID_INVALID;
	memset(info, 0, sizeof(*info));
	p11_pad(info->slotDescription, 64, s->reader);
	p11_pad(info->manufacturerID, 32, "cardlicd simulation");
	info->flags = CKF_REMOVABLE_DEVICE | CKF_HW_SLOT;
	if (p11_slot_has_token(s))
		info->flags |= CKF_TOKEN_PRESENT;
	info->hardwareVersion.major = 1;
	info->firmwareVersion.major = 1;
	return CKR_OK;
}

CK_RV
C_GetTokenInfo(CK_SLOT_ID id, CK_TOKEN_INFO *info)
{
	struct p11_slot *s;
	BYTE ti[TGT_INFO_LEN];
	char label[64];
	size_t n;
	CK_RV rv;

	if (!p11_ready)
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	if (info == NULL)
		return CKR_ARGUMENTS_BAD;
	if ((s = p11_slot(id)) == NULL)
		return CKR_SLOT_ID_INVALID;
	pthread_mutex_lock(&s->lock);
	rv = p11_get(&s->present) ? p11_token_info(s, ti) :
	    CKR_TOKEN_NOT_PRESENT;
	pthread_mutex_unlock(&s->lock);
	if (rv != CKR_OK)
		return rv;
	memset(info, 0, sizeof(*info));
	n = LIC_FIELD_LEN;
	while (n > 0 && ti[16 + n - 1] == ' ')
		n--;
	snprintf(label, sizeof(label), "CardLic Sim %.*s", (int)n, ti + 16);
	p11_pad(info->label, 32, label);
	p11_pad(info->manufacturerID, 32, "cardlicd simulation");
	memcpy(info->model, ti, LIC_FIELD_LEN);
	memcpy(info->serialNumber, ti + 16, LIC_FIELD_LEN);
	info->flags = CKF_LOGIN_REQUIRED | CKF_USER_PIN_INITIALIZED |
	    CKF_TOKEN_INITIALIZED;
	if (ti[32] == 0)
		info->flags |= CKF_USER_PIN_LOCKED;
	else if (ti[32] == 1)
		info->flags |= CKF_USER_PIN_FINAL_TRY | CKF_USER_PIN_COUNT_LOW;
	else if (ti[32] < ti[33])
		info->flags |= CKF_USER_PIN_COUNT_LOW;
	info->ulMaxSessionCount = CK_EFFECTIVELY_INFINITE;
	info->ulSessionCount = CK_UNAVAILABLE_INFORMATION;
	info->ulMaxRwSessionCount = CK_EFFECTIVELY_INFINITE;
	info->ulRwSessionCount = CK_UNAVAILABLE_INFORMATION;
	info->ulMaxPinLen = 32;
	info->ulMinPinLen = 4;
	info->ulTotalPublicMemory = CK_UNAVAILABLE_INFORMATION;
	info->ulFreePublicMemory = CK_UNAVAILABLE_INFORMATION;
	info->ulTotalPrivateMemory = CK_UNAVAILABLE_INFORMATION;
	info->ulFreePrivateMemory = CK_UNAVAILABLE_INFORMATION;
	info->hardwareVersion.major = 1;
	info->firmwareVersion.major = 1;
	memset(info->utcTime, ' ', sizeof(info->utcTime));
	return CKR_OK;
}

CK_RV
C_GetMechanismList(CK_SLOT_ID id, CK_MECHANISM_TYPE *list,
    unsigned long *count)
{
	(void)list;
	if (!p11_ready)
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	if (p11_slot(id) == NULL)
		return CKR_SLOT_ID_INVALID;
	if (count == NULL)
		return CKR_ARGUMENTS_BAD;
	*count = 0;
	return CKR_OK;
}

CK_RV
C_GetMechanismInfo(CK_SLOT_ID id, CK_MECHANISM_TYPE type,
    CK_MECHANISM_INFO *info)
{
	(void)type;
	(void)info;
	if (!p11_ready)
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	if (p11_slot(id) == NULL)
		return CKR_SLOT_ID_INVALID;
	return CKR_MECHANISM_INVALID;
}

CK_RV
C_OpenSession(CK_SLOT_ID id, CK_FLAGS flags, void *app, CK_NOTIFY notify,
    CK_SESSION_HANDLE *out)
{
	struct p11_slot *s;
	CK_RV rv;
	int i;

	(void)app;
	(void)notify;
	if (!p11_ready)
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	if (out == NULL)
		return CKR_ARGUMENTS_BAD;
	if (!(flags & CKF_SERIAL_SESSION))
		return CKR_SESSION_PARALLEL_NOT_SUPPORTED;
	if ((s = p11_slot(id)) == NULL)
		return CKR_SLOT_ID_INVALID;
	pthread_mutex_lock(&s->lock);
	rv = p11_get(&s->present) ? p11_slot_connect(s) :
	    CKR_TOKEN_NOT_PRESENT;
	if (rv != CKR_OK) {
		pthread_mutex_unlock(&s->lock);
		return rv;
	}
	pthread_mutex_lock(&p11_lock);
	for (i = 0; i < P11_MAX_SESSIONS; i++)
		if (!p11_sessions[i].used)
			break;
	if (i == P11_MAX_SESSIONS) {
		pthread_mutex_unlock(&p11_lock);
		pthread_mutex_unlock(&s->lock);
		return CKR_SESSION_COUNT;
	}
	p11_sessions[i].used = 1;
	p11_sessions[i].slot = id;
	p11_sessions[i].gen = s->gen;
	p11_sessions[i].flags = flags;
	p11_sessions[i].finding = 0;
	s->sessions++;
	pthread_mutex_unlock(&p11_lock);
	pthread_mutex_unlock(&s->lock);
	*out = (CK_SESSION_HANDLE)(i + 1);
	return CKR_OK;
}

/* Session closed; with the last one the token logs out.  Slot locked. */
static void
p11_close(struct p11_session *ss, struct p11_slot *s)
{
	static const BYTE logout[] = { 0x00, 0x20, 0xFF, 0x01 };
	BYTE r[2];
	DWORD rlen = 0;
	unsigned sw;

	pthread_mutex_lock(&p11_lock);
	ss->used = 0;
	s->sessions--;
	pthread_mutex_unlock(&p11_lock);
	if (s->sessions == 0) {
		if (s->logged_in)
			p11_slot_apdu(s, logout, sizeof(logout), r, &rlen, &sw);
		p11_slot_drop(s, 0);
	}
}

CK_RV
C_CloseSession(CK_SESSION_HANDLE h)
{
	struct p11_session *ss;
	struct p11_slot *s;
	CK_RV rv;

	if ((rv = p11_session(h, &ss, &s)) != CKR_OK)
		return rv;
	p11_close(ss, s);
	pthread_mutex_unlock(&s->lock);
	return CKR_OK;
}

CK_RV
C_CloseAllSessions(CK_SLOT_ID id)
{
	struct p11_slot *s;
	int i;

	if (!p11_ready)
		return CKR_CRYPTOKI_NOT_INITIALIZED;
	if ((s = p11_slot(id)) == NULL)
		return CKR_SLOT_ID_INVALID;
	pthread_mutex_lock(&s->lock);
	for (i = 0; i < P11_MAX_SESSIONS; i++)
		if (p11_sessions[i].used && p11_sessions[i].slot == id)
			p11_close(&p11_sessions[i], s);
	pthread_mutex_unlock(&s->lock);
	return CKR_OK;
}

CK_RV
C_GetSessionInfo(CK_SESSION_HANDLE h, CK_SESSION_INFO *info)
{
	struct p11_session *ss;
	struct p11_slot *s;
	CK_RV rv;

	if (info == NULL)
		return CKR_ARGUMENTS_BAD;
	if ((rv = p11_session(h, &ss, &s)) != CKR_OK)
		return rv;
	memset(info, 0, sizeof(*info));
	info->slotID = ss->slot;
	info->flags = ss->flags;
	if (ss->flags & CKF_RW_SESSION)
		info->state = s->logged_in ? CKS_RW_USER_FUNCTIONS :
		    CKS_RW_PUBLIC_SESSION;
	else
		info->state = s->logged_in ? CKS_RO_USER_FUNCTIONS :
		    CKS_RO_PUBLIC_SESSION;
	pthread_mutex_unlock(&s->lock);
	return CKR_OK;
}

CK_RV
C_Login(CK_SESSION_HANDLE h, CK_USER_TYPE user, unsigned char *pin,
    unsigned long len)
{
	struct p11_session *ss;
	struct p11_slot *s;
	BYTE cmd[5 + 32], r[2];
	DWORD rlen = 0;
	unsigned sw;
	CK_RV rv;

	if ((rv = p11_session(h, &ss, &s)) != CKR_OK)
		return rv;
	if (user != CKU_USER)
		rv = CKR_USER_TYPE_INVALID;
	else if (s->logged_in)
		rv = CKR_USER_ALREADY_LOGGED_IN;
	else if (pin == NULL || len < 4 || len > 32)
		rv = CKR_PIN_LEN_RANGE;
	if (rv != CKR_OK)
		goto out;
	cmd[0] = 0x00;
	cmd[1] = 0x20;
	cmd[2] = 0x00;
	cmd[3] = 0x01;
	cmd[4] = (BYTE)len;
	memcpy(cmd + 5, pin, len);
	rv = p11_slot_apdu(s, cmd, 5 + (DWORD)len, r, &rlen, &sw);
	/* The PIN went to the card; it does not stay on our stack. */
	explicit_bzero(cmd, sizeof(cmd));
	if (rv != CKR_OK)
		goto out;
	if (sw == 0x9000)
		s->logged_in = 1;
	else if (sw == 0x6983)
		rv = CKR_PIN_LOCKED;
	else if ((sw & 0xFFF0) == 0x63C0)
		rv = CKR_PIN_INCORRECT;
	else
		rv = CKR_DEVICE_ERROR;
out:
	pthread_mutex_unlock(&s->lock);
	return rv;
}

CK_RV
C_Logout(CK_SESSION_HANDLE h)
{
	static const BYTE cmd[] = { 0x00, 0x20, 0xFF, 0x01 };
	struct p11_session *ss;
	struct p11_slot *s;
	BYTE r[2];
	DWORD rlen = 0;
	unsigned sw;
	CK_RV rv;

	if ((rv = p11_session(h, &ss, &s)) != CKR_OK)
		return rv;
	if (!s->logged_in)
		rv = CKR_USER_NOT_LOGGED_IN;
	else {
		s->logged_in = 0;
		rv = p11_slot_apdu(s, cmd, sizeof(cmd), r, &rlen, &sw);
		if (rv == CKR_OK && sw != 0x9000)
			rv = CKR_DEVICE_ERROR;
	}
	pthread_mutex_unlock(&s->lock);
	return rv;
}

/* The vendor attribute lives on object handle 0, and only there. */
static CK_RV
p11_check_template(CK_OBJECT_HANDLE obj, CK_ATTRIBUTE *t,
    unsigned long n)
{
	if (t == NULL || n == 0)
		return CKR_ARGUMENTS_BAD;
	if (obj != 0)
		return CKR_OBJECT_HANDLE_INVALID;
	if (n != 1 || t[0].type != LIC_ATTRIBUTE) {
		t[0].ulValueLen = CK_UNAVAILABLE_INFORMATION;
		return CKR_ATTRIBUTE_TYPE_INVALID;
	}
	return CKR_OK;
}

CK_RV
C_GetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj,
    CK_ATTRIBUTE *t, unsigned long n)
{
	static const BYTE cmd[] = { TGT_CLA, TGT_INS_GET_STATUS, 0, 0,
	    LIC_STATUS_LEN };
	struct p11_session *ss;
	struct p11_slot *s;
	BYTE st[LIC_STATUS_LEN];
	DWORD rlen = LIC_STATUS_LEN;
	unsigned sw;
	CK_RV rv;

	if ((rv = p11_session(h, &ss, &s)) != CKR_OK)
		return rv;
	if ((rv = p11_check_template(obj, t, n)) != CKR_OK)
		goto out;
	if (t[0].pValue == NULL) {
		t[0].ulValueLen = LIC_STATUS_LEN;
		goto out;
	}
	if (t[0].ulValueLen < LIC_STATUS_LEN) {
		t[0].ulValueLen = CK_UNAVAILABLE_INFORMATION;
		rv = CKR_BUFFER_TOO_SMALL;
		goto out;
	}
	rv = p11_slot_apdu(s, cmd, sizeof(cmd), st, &rlen, &sw);
	if (rv == CKR_OK && (sw != 0x9000 || rlen != LIC_STATUS_LEN))
		rv = CKR_DEVICE_ERROR;
	if (rv == CKR_OK) {
		memcpy(t[0].pValue, st, LIC_STATUS_LEN);
		t[0].ulValueLen = LIC_STATUS_LEN;
	}
out:
	pthread_mutex_unlock(&s->lock);
	return rv;
}

CK_RV
C_SetAttributeValue(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj,
    CK_ATTRIBUTE *t, unsigned long n)
{
	struct p11_session *ss;
	struct p11_slot *s;
	BYTE cmd[5 + LIC_BLOB_LEN], r[2];
	DWORD rlen = 0;
	unsigned sw;
	CK_RV rv;

	if ((rv = p11_session(h, &ss, &s)) != CKR_OK)
		return rv;
	if ((rv = p11_check_template(obj, t, n)) != CKR_OK)
		goto out;
	if (!(ss->flags & CKF_RW_SESSION)) {
		rv = CKR_SESSION_READ_ONLY;
		goto out;
	}
	if (!s->logged_in) {
		rv = CKR_USER_NOT_LOGGED_IN;
		goto out;
	}
	if (t[0].pValue == NULL || t[0].ulValueLen != LIC_BLOB_LEN) {
		rv = CKR_ATTRIBUTE_VALUE_INVALID;
		goto out;
	}
	cmd[0] = TGT_CLA;
	cmd[1] = TGT_INS_PUT_LICENSE;
	cmd[2] = cmd[3] = 0;
	cmd[4] = LIC_BLOB_LEN;
	memcpy(cmd + 5, t[0].pValue, LIC_BLOB_LEN);
	rv = p11_slot_apdu(s, cmd, sizeof(cmd), r, &rlen, &sw);
	if (rv != CKR_OK)
		goto out;
	if (sw == 0x6982) {
		s->logged_in = 0;
		rv = CKR_USER_NOT_LOGGED_IN;
	} else if (sw == 0x6700)
		rv = CKR_ATTRIBUTE_VALUE_INVALID;
	else if (sw != 0x9000)
		rv = CKR_DEVICE_ERROR;
out:
	pthread_mutex_unlock(&s->lock);
	return rv;
}

/* The token shows no objects; these let generic tools list it. */
CK_RV
C_FindObjectsInit(CK_SESSION_HANDLE h, CK_ATTRIBUTE *t,
    unsigned long n)
{
	struct p11_session *ss;
	struct p11_slot *s;
	CK_RV rv;

	(void)t;
	(void)n;
	if ((rv = p11_session(h, &ss, &s)) != CKR_OK)
		return rv;
	if (ss->finding)
		rv = CKR_OPERATION_ACTIVE;
	else
		ss->finding = 1;
	pthread_mutex_unlock(&s->lock);
	return rv;
}

CK_RV
C_FindObjects(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE *objs, unsigned long max,
    unsigned long *count)
{
	struct p11_session *ss;
	struct p11_slot *s;
	CK_RV rv;

	(void)objs;
	(void)max;
	if (count == NULL)
		return CKR_ARGUMENTS_BAD;
	if ((rv = p11_session(h, &ss, &s)) != CKR_OK)
		return rv;
	if (!ss->finding)
		rv = CKR_OPERATION_NOT_INITIALIZED;
	*count = 0;
	pthread_mutex_unlock(&s->lock);
	return rv;
}

CK_RV
C_FindObjectsFinal(CK_SESSION_HANDLE h)
{
	struct p11_session *ss;
	struct p11_slot *s;
	CK_RV rv;

	if ((rv = p11_session(h, &ss, &s)) != CKR_OK)
		return rv;
	if (!ss->finding)
		rv = CKR_OPERATION_NOT_INITIALIZED;
	ss->finding = 0;
	pthread_mutex_unlock(&s->lock);
	return rv;
}

/* What the middleware does not offer: it is a license loader, no more. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#define P11_UNSUPPORTED(name, args) \
	CK_RV name args { return CKR_FUNCTION_NOT_SUPPORTED; }
P11_UNSUPPORTED(C_WaitForSlotEvent, (CK_FLAGS flags, CK_SLOT_ID *slot,
	void *reserved))
P11_UNSUPPORTED(C_InitToken, (CK_SLOT_ID slot_id, unsigned char *pin,
	unsigned long pin_len, unsigned char *label))
P11_UNSUPPORTED(C_InitPIN, (CK_SESSION_HANDLE session, unsigned char
	*pin, unsigned long pin_len))
P11_UNSUPPORTED(C_SetPIN, (CK_SESSION_HANDLE session, unsigned char
	*old_pin, unsigned long old_len, unsigned char *new_pin, unsigned long
	new_len))
P11_UNSUPPORTED(C_GetOperationState, (CK_SESSION_HANDLE session,
	unsigned char *operation_state, unsigned long *operation_state_len))
P11_UNSUPPORTED(C_SetOperationState, (CK_SESSION_HANDLE session,
	unsigned char *operation_state, unsigned long operation_state_len,
	CK_OBJECT_HANDLE encryption_key, CK_OBJECT_HANDLE authentiation_key))
P11_UNSUPPORTED(C_CreateObject, (CK_SESSION_HANDLE session, CK_ATTRIBUTE
	*templ, unsigned long count, CK_OBJECT_HANDLE *object))
P11_UNSUPPORTED(C_CopyObject, (CK_SESSION_HANDLE session,
	CK_OBJECT_HANDLE object, CK_ATTRIBUTE *templ, unsigned long count,
	CK_OBJECT_HANDLE *new_object))
P11_UNSUPPORTED(C_DestroyObject, (CK_SESSION_HANDLE session,
	CK_OBJECT_HANDLE object))
P11_UNSUPPORTED(C_GetObjectSize, (CK_SESSION_HANDLE session,
	CK_OBJECT_HANDLE object, unsigned long *size))
P11_UNSUPPORTED(C_EncryptInit, (CK_SESSION_HANDLE session, CK_MECHANISM
	*mechanism, CK_OBJECT_HANDLE key))
P11_UNSUPPORTED(C_Encrypt, (CK_SESSION_HANDLE session, unsigned char
	*data, unsigned long data_len, unsigned char *encrypted_data, unsigned
	long *encrypted_data_len))
P11_UNSUPPORTED(C_EncryptUpdate, (CK_SESSION_HANDLE session, unsigned
	char *part, unsigned long part_len, unsigned char *encrypted_part,
	unsigned long *encrypted_part_len))
P11_UNSUPPORTED(C_EncryptFinal, (CK_SESSION_HANDLE session, unsigned
	char *last_encrypted_part, unsigned long *last_encrypted_part_len))
P11_UNSUPPORTED(C_DecryptInit, (CK_SESSION_HANDLE session, CK_MECHANISM
	*mechanism, CK_OBJECT_HANDLE key))
P11_UNSUPPORTED(C_Decrypt, (CK_SESSION_HANDLE session, unsigned char
	*encrypted_data, unsigned long encrypted_data_len, unsigned char *data,
	unsigned long *data_len))
P11_UNSUPPORTED(C_DecryptUpdate, (CK_SESSION_HANDLE session, unsigned
	char *encrypted_part, unsigned long encrypted_part_len, unsigned char
	*part, unsigned long *part_len))
P11_UNSUPPORTED(C_DecryptFinal, (CK_SESSION_HANDLE session, unsigned
	char *last_part, unsigned long *last_part_len))
P11_UNSUPPORTED(C_DigestInit, (CK_SESSION_HANDLE session, CK_MECHANISM
	*mechanism))
P11_UNSUPPORTED(C_Digest, (CK_SESSION_HANDLE session, unsigned char
	*data, unsigned long data_len, unsigned char *digest, unsigned long
	*digest_len))
P11_UNSUPPORTED(C_DigestUpdate, (CK_SESSION_HANDLE session, unsigned
	char *part, unsigned long part_len))
P11_UNSUPPORTED(C_DigestKey, (CK_SESSION_HANDLE session,
	CK_OBJECT_HANDLE key))
P11_UNSUPPORTED(C_DigestFinal, (CK_SESSION_HANDLE session, unsigned char
	*digest, unsigned long *digest_len))
P11_UNSUPPORTED(C_SignInit, (CK_SESSION_HANDLE session, CK_MECHANISM
	*mechanism, CK_OBJECT_HANDLE key))
P11_UNSUPPORTED(C_Sign, (CK_SESSION_HANDLE session, unsigned char *data,
	unsigned long data_len, unsigned char *signature, unsigned long
	*signature_len))
P11_UNSUPPORTED(C_SignUpdate, (CK_SESSION_HANDLE session, unsigned char
	*part, unsigned long part_len))
P11_UNSUPPORTED(C_SignFinal, (CK_SESSION_HANDLE session, unsigned char
	*signature, unsigned long *signature_len))
P11_UNSUPPORTED(C_SignRecoverInit, (CK_SESSION_HANDLE session,
	CK_MECHANISM *mechanism, CK_OBJECT_HANDLE key))
P11_UNSUPPORTED(C_SignRecover, (CK_SESSION_HANDLE session, unsigned char
	*data, unsigned long data_len, unsigned char *signature, unsigned long
	*signature_len))
P11_UNSUPPORTED(C_VerifyInit, (CK_SESSION_HANDLE session, CK_MECHANISM
	*mechanism, CK_OBJECT_HANDLE key))
P11_UNSUPPORTED(C_Verify, (CK_SESSION_HANDLE session, unsigned char
	*data, unsigned long data_len, unsigned char *signature, unsigned long
	signature_len))
P11_UNSUPPORTED(C_VerifyUpdate, (CK_SESSION_HANDLE session, unsigned
	char *part, unsigned long part_len))
P11_UNSUPPORTED(C_VerifyFinal, (CK_SESSION_HANDLE session, unsigned char
	*signature, unsigned long signature_len))
P11_UNSUPPORTED(C_VerifyRecoverInit, (CK_SESSION_HANDLE session,
	CK_MECHANISM *mechanism, CK_OBJECT_HANDLE key))
P11_UNSUPPORTED(C_VerifyRecover, (CK_SESSION_HANDLE session, unsigned
	char *signature, unsigned long signature_len, unsigned char *data,
	unsigned long *data_len))
P11_UNSUPPORTED(C_DigestEncryptUpdate, (CK_SESSION_HANDLE session,
	unsigned char *part, unsigned long part_len, unsigned char
	*encrypted_part, unsigned long *encrypted_part_len))
P11_UNSUPPORTED(C_DecryptDigestUpdate, (CK_SESSION_HANDLE session,
	unsigned char *encrypted_part, unsigned long encrypted_part_len,
	unsigned char *part, unsigned long *part_len))
P11_UNSUPPORTED(C_SignEncryptUpdate, (CK_SESSION_HANDLE session,
	unsigned char *part, unsigned long part_len, unsigned char
	*encrypted_part, unsigned long *encrypted_part_len))
P11_UNSUPPORTED(C_DecryptVerifyUpdate, (CK_SESSION_HANDLE session,
	unsigned char *encrypted_part, unsigned long encrypted_part_len,
	unsigned char *part, unsigned long *part_len))
P11_UNSUPPORTED(C_GenerateKey, (CK_SESSION_HANDLE session, CK_MECHANISM
	*mechanism, CK_ATTRIBUTE *templ, unsigned long count, CK_OBJECT_HANDLE
	*key))
P11_UNSUPPORTED(C_GenerateKeyPair, (CK_SESSION_HANDLE session,
	CK_MECHANISM *mechanism, CK_ATTRIBUTE *public_key_template, unsigned
	long public_key_attribute_count, CK_ATTRIBUTE *private_key_template,
	unsigned long private_key_attribute_count, CK_OBJECT_HANDLE *public_key,
	CK_OBJECT_HANDLE *private_key))
P11_UNSUPPORTED(C_WrapKey, (CK_SESSION_HANDLE session, CK_MECHANISM
	*mechanism, CK_OBJECT_HANDLE wrapping_key, CK_OBJECT_HANDLE key,
	unsigned char *wrapped_key, unsigned long *wrapped_key_len))
P11_UNSUPPORTED(C_UnwrapKey, (CK_SESSION_HANDLE session, CK_MECHANISM
	*mechanism, CK_OBJECT_HANDLE unwrapping_key, unsigned char *wrapped_key,
	unsigned long wrapped_key_len, CK_ATTRIBUTE *templ, unsigned long
	attribute_count, CK_OBJECT_HANDLE *key))
P11_UNSUPPORTED(C_DeriveKey, (CK_SESSION_HANDLE session, CK_MECHANISM
	*mechanism, CK_OBJECT_HANDLE base_key, CK_ATTRIBUTE *templ, unsigned
	long attribute_count, CK_OBJECT_HANDLE *key))
P11_UNSUPPORTED(C_SeedRandom, (CK_SESSION_HANDLE session, unsigned char
	*seed, unsigned long seed_len))
P11_UNSUPPORTED(C_GenerateRandom, (CK_SESSION_HANDLE session, unsigned
	char *random_data, unsigned long random_len))
P11_UNSUPPORTED(C_GetFunctionStatus, (CK_SESSION_HANDLE session))
P11_UNSUPPORTED(C_CancelFunction, (CK_SESSION_HANDLE session))
#pragma GCC diagnostic pop

static CK_FUNCTION_LIST p11_functions = {
	{ 2, 40 },
	C_Initialize, C_Finalize, C_GetInfo, C_GetFunctionList,
	C_GetSlotList, C_GetSlotInfo, C_GetTokenInfo, C_GetMechanismList,
	C_GetMechanismInfo, C_InitToken, C_InitPIN, C_SetPIN, C_OpenSession,
	C_CloseSession, C_CloseAllSessions, C_GetSessionInfo,
	C_GetOperationState, C_SetOperationState, C_Login, C_Logout,
	C_CreateObject, C_CopyObject, C_DestroyObject, C_GetObjectSize,
	C_GetAttributeValue, C_SetAttributeValue, C_FindObjectsInit,
	C_FindObjects, C_FindObjectsFinal, C_EncryptInit, C_Encrypt,
	C_EncryptUpdate, C_EncryptFinal, C_DecryptInit, C_Decrypt,
	C_DecryptUpdate, C_DecryptFinal, C_DigestInit, C_Digest,
	C_DigestUpdate, C_DigestKey, C_DigestFinal, C_SignInit, C_Sign,
	C_SignUpdate, C_SignFinal, C_SignRecoverInit, C_SignRecover,
	C_VerifyInit, C_Verify, C_VerifyUpdate, C_VerifyFinal,
	C_VerifyRecoverInit, C_VerifyRecover, C_DigestEncryptUpdate,
	C_DecryptDigestUpdate, C_SignEncryptUpdate, C_DecryptVerifyUpdate,
	C_GenerateKey, C_GenerateKeyPair, C_WrapKey, C_UnwrapKey,
	C_DeriveKey, C_SeedRandom, C_GenerateRandom, C_GetFunctionStatus,
	C_CancelFunction, C_WaitForSlotEvent
};

P11_EXPORT CK_RV
C_GetFunctionList(CK_FUNCTION_LIST **list)
{
	if (list == NULL)
		return CKR_ARGUMENTS_BAD;
	*list = &p11_functions;
	return CKR_OK;
}

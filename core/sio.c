/* sio.c — Socket.IO v5: namespaces, sockets, binary attachments, rooms and
 * broadcast to this process's sockets. Which sockets an emit reaches across
 * servers is the Lua adapters' business (moonwire.io.local_adapter and
 * moonwire.io.redis_adapter); they come here for this process's part. */
#include "sio.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "hash.h"
#include "server.h"
#include "sio_packet.h"

/* Every socket is in a room of its own (its id), so a room is made per
 * client: its name lives in the same allocation, and its members array
 * starts with room for one. */
typedef struct room {
  size_t len;
  sio_socket **members;
  uint32_t n, cap;
  struct room *hnext;
  char name[];
} room;

typedef struct membership {
  room *r;
  uint32_t idx; /* where this socket sits in r->members */
} membership;

struct sio_nsp {
  sio_server *io;
  char *name;
  size_t len;
  sio_nsp *next;
  room **buckets;
  uint32_t nbuckets, nrooms;
  sio_socket *sockets; /* connected sockets */
  uint32_t nsockets;
  uint32_t nrefs;      /* sockets of any state that point here */
  bool adopted;        /* created by the app; else made for a client on trial (dynamic) */
};

struct sio_socket {
  char id[21];
  sio_nsp *nsp;
  sio_client *client;
  sio_socket *cnext;         /* the client's sockets */
  sio_socket *nprev, *nnext; /* the namespace's connected sockets */
  membership *rooms;
  uint32_t nrooms, rcap;
  uint64_t except_seq;
  void *ud;
  bool connected, gone;
};

struct sio_client {
  sio_server *io;
  eio_session *es;
  sio_socket *sockets;
  /* connectTimeout, then an attachments' timeout: only while one runs (an
   * idle client holds none: it is freed when the CONNECT comes). */
  uv_timer_t *timer;
  /* A binary packet waiting for its attachments. */
  sio_socket *bin_sock;
  int bin_type, bin_need, bin_got;
  int64_t bin_id;
  mw_str bin_json;
  mw_str *bin_atts;
  void *ud;
  bool closed;
};

struct sio_server {
  struct mw_server *srv;
  eio_server *eio;
  sio_handler h;
  void *ud;
  sio_nsp *nsps;
  sio_options opt;
  uint64_t seq;
  bool dynamic; /* CONNECTs to unknown namespaces go to the app (dynamic namespaces) */
};

/* ---- namespaces and rooms ---- */

static sio_nsp *nsp_new(sio_server *io, const char *name, size_t len, bool adopted) {
  sio_nsp *n = calloc(1, sizeof *n);
  if (!n) return NULL;
  n->name = malloc(len + 1);
  n->nbuckets = 64;
  n->buckets = calloc(n->nbuckets, sizeof *n->buckets);
  if (!n->name || !n->buckets) {
    free(n->name);
    free(n->buckets);
    free(n);
    return NULL;
  }
  memcpy(n->name, name, len);
  n->name[len] = '\0';
  n->len = len;
  n->io = io;
  n->adopted = adopted;
  n->next = io->nsps;
  io->nsps = n;
  return n;
}

static sio_nsp *nsp_find(sio_server *io, const char *name, size_t len) {
  for (sio_nsp *n = io->nsps; n; n = n->next)
    if (n->len == len && memcmp(n->name, name, len) == 0) return n;
  return NULL;
}

sio_nsp *sio_nsp_get(sio_server *io, const char *name, size_t len, bool create) {
  sio_nsp *n = nsp_find(io, name, len);
  if (n && create) n->adopted = true;
  if (n && !n->adopted) return NULL; /* on trial: not a namespace of the app yet */
  if (n || !create) return n;
  return nsp_new(io, name, len, true);
}

void sio_set_dynamic(sio_server *io, bool on) { io->dynamic = on; }

const char *sio_nsp_name(sio_nsp *n) { return n->name; }
uint32_t sio_nsp_size(sio_nsp *n) { return n->nsockets; }

static room *room_find(sio_nsp *n, const char *name, size_t len) {
  for (room *r = n->buckets[mw_hash32(name, len) & (n->nbuckets - 1)]; r; r = r->hnext)
    if (r->len == len && memcmp(r->name, name, len) == 0) return r;
  return NULL;
}

static void rooms_grow(sio_nsp *n) {
  uint32_t nb = n->nbuckets * 2;
  room **b = calloc(nb, sizeof *b);
  if (!b) return;
  for (uint32_t i = 0; i < n->nbuckets; i++) {
    for (room *r = n->buckets[i], *next; r; r = next) {
      next = r->hnext;
      uint32_t k = mw_hash32(r->name, r->len) & (nb - 1);
      r->hnext = b[k];
      b[k] = r;
    }
  }
  free(n->buckets);
  n->buckets = b;
  n->nbuckets = nb;
}

static void room_free(sio_nsp *n, room *r) {
  room **pp = &n->buckets[mw_hash32(r->name, r->len) & (n->nbuckets - 1)];
  while (*pp != r) pp = &(*pp)->hnext;
  *pp = r->hnext;
  n->nrooms--;
  free(r->members);
  free(r);
}

static int rooms_add(sio_nsp *n, sio_socket *s, const char *name, size_t len) {
  room *r = room_find(n, name, len);
  if (r) {
    for (uint32_t i = 0; i < s->nrooms; i++)
      if (s->rooms[i].r == r) return 0; /* already in */
  } else {
    r = calloc(1, sizeof *r + len + 1);
    if (!r) return -ENOMEM;
    memcpy(r->name, name, len);
    r->name[len] = '\0';
    r->len = len;
    if (n->nrooms >= n->nbuckets) rooms_grow(n);
    uint32_t k = mw_hash32(name, len) & (n->nbuckets - 1);
    r->hnext = n->buckets[k];
    n->buckets[k] = r;
    n->nrooms++;
  }
  if (r->n == r->cap) {
    uint32_t cap = r->cap ? r->cap * 2 : 1;
    sio_socket **m = realloc(r->members, cap * sizeof *m);
    if (!m) return -ENOMEM;
    r->members = m;
    r->cap = cap;
  }
  if (s->nrooms == s->rcap) {
    uint32_t cap = s->rcap ? s->rcap * 2 : 2;
    membership *m = realloc(s->rooms, cap * sizeof *m);
    if (!m) return -ENOMEM;
    s->rooms = m;
    s->rcap = cap;
  }
  r->members[r->n] = s;
  s->rooms[s->nrooms++] = (membership){r, r->n};
  r->n++;
  return 1;
}

/* Drops s's membership i (swap-remove in both arrays). */
static void drop_membership(sio_nsp *n, sio_socket *s, uint32_t i) {
  room *r = s->rooms[i].r;
  uint32_t idx = s->rooms[i].idx;
  sio_socket *moved = r->members[--r->n];
  if (moved != s) {
    r->members[idx] = moved;
    for (uint32_t j = 0; j < moved->nrooms; j++)
      if (moved->rooms[j].r == r) {
        moved->rooms[j].idx = idx;
        break;
      }
  }
  s->rooms[i] = s->rooms[--s->nrooms];
  if (r->n == 0) room_free(n, r);
}

static int rooms_del(sio_nsp *n, sio_socket *s, const char *name, size_t len) {
  for (uint32_t i = 0; i < s->nrooms; i++) {
    room *r = s->rooms[i].r;
    if (r->len == len && memcmp(r->name, name, len) == 0) {
      drop_membership(n, s, i);
      return 1;
    }
  }
  return 0;
}

static void rooms_del_all(sio_nsp *n, sio_socket *s) {
  while (s->nrooms) drop_membership(n, s, s->nrooms - 1);
}

static void rooms_each(sio_nsp *n, const sio_target *t, void (*cb)(void *ud, sio_socket *s), void *ud) {
  uint64_t seq = ++n->io->seq;
  for (int i = 0; i < t->nexcept; i++) {
    room *r = room_find(n, t->except[i], t->except_lens[i]);
    for (uint32_t j = 0; r && j < r->n; j++) r->members[j]->except_seq = seq;
  }
  if (t->except_socket) t->except_socket->except_seq = seq;
  /* Collect first: a callback may change rooms (socketsLeave, disconnect). */
  size_t cap = t->nrooms ? 16 : n->nsockets + 1, count = 0;
  sio_socket **list = malloc(cap * sizeof *list);
  if (!list) return;
  if (t->nrooms == 0) {
    for (sio_socket *s = n->sockets; s; s = s->nnext)
      if (s->except_seq != seq) list[count++] = s;
  } else {
    uint64_t mark = ++n->io->seq; /* sockets in several rooms get one copy */
    for (int i = 0; i < t->nrooms; i++) {
      room *r = room_find(n, t->rooms[i], t->room_lens[i]);
      for (uint32_t j = 0; r && j < r->n; j++) {
        sio_socket *s = r->members[j];
        if (s->except_seq == seq || s->except_seq == mark) continue;
        s->except_seq = mark;
        if (count == cap) {
          cap *= 2;
          sio_socket **l = realloc(list, cap * sizeof *l);
          if (!l) break;
          list = l;
        }
        list[count++] = s;
      }
    }
  }
  for (size_t i = 0; i < count; i++)
    if (!list[i]->gone) cb(ud, list[i]);
  free(list);
}

static void room_free(sio_nsp *n, room *r);

static void nsp_free(sio_nsp *n) {
  for (uint32_t i = 0; i < n->nbuckets; i++)
    while (n->buckets[i]) room_free(n, n->buckets[i]);
  free(n->buckets);
  free(n->name);
  free(n);
}

/* A namespace made for a client's CONNECT that the app did not adopt goes
 * with its last socket, so made-up names cost nothing. */
static void nsp_unref(sio_nsp *n) {
  if (--n->nrefs || n->adopted) return;
  sio_nsp **pp = &n->io->nsps;
  while (*pp && *pp != n) pp = &(*pp)->next;
  if (*pp) *pp = n->next;
  nsp_free(n);
}

/* ---- sockets ---- */

const char *sio_socket_id(sio_socket *s) { return s->id; }
sio_nsp *sio_socket_nsp(sio_socket *s) { return s->nsp; }
sio_client *sio_socket_client(sio_socket *s) { return s->client; }
bool sio_socket_connected(sio_socket *s) { return s->connected && !s->gone; }
void *sio_socket_userdata(sio_socket *s) { return s->ud; }
void sio_socket_set_userdata(sio_socket *s, void *ud) { s->ud = ud; }
void *sio_client_userdata(sio_client *c) { return c->ud; }
void sio_client_set_userdata(sio_client *c, void *ud) { c->ud = ud; }
const char *sio_client_transport(sio_client *c) { return c->es ? eio_transport(c->es) : "closed"; }
const char *sio_client_id(sio_client *c) { return c->es ? eio_sid(c->es) : ""; }
size_t sio_client_buffered(sio_client *c) { return c->es && !c->closed ? eio_buffered(c->es) : 0; }

/* Sends packet head + payload text as one Engine.IO message. */
static void send_text(sio_socket *s, const char *text, size_t len) {
  if (s->client->closed) return;
  eio_send(s->client->es, text, len, false);
}

static void send_control(sio_socket *s, int type, const char *json, size_t len) {
  mw_str p = {0};
  sio_packet_head(&p, type, 0, s->nsp->name, s->nsp->len, -1);
  if (len) mw_str_append(&p, json, len);
  send_text(s, p.p, p.len);
  mw_str_free(&p);
}

/* Removes s from its client and namespace and frees it. */
static void socket_remove(sio_socket *s, const char *reason, bool notify) {
  sio_client *c = s->client;
  sio_server *io = c->io;
  if (s->gone) return;
  s->gone = true;
  if (c->bin_sock == s) c->bin_sock = NULL;
  /* "disconnecting" handlers still see the socket's rooms; s->gone keeps
   * anything sent meanwhile from reaching it. */
  if (notify) io->h.on_disconnect(io->ud, s, reason);
  if (s->connected) {
    rooms_del_all(s->nsp, s);
    if (s->nprev) s->nprev->nnext = s->nnext;
    else s->nsp->sockets = s->nnext;
    if (s->nnext) s->nnext->nprev = s->nprev;
    s->nsp->nsockets--;
  }
  sio_socket **pp = &c->sockets;
  while (*pp && *pp != s) pp = &(*pp)->cnext;
  if (*pp) *pp = s->cnext;
  sio_nsp *n = s->nsp;
  free(s->rooms);
  free(s);
  nsp_unref(n);
}

int sio_socket_set_id(sio_socket *s, const char *id) {
  size_t len = strlen(id);
  if (s->gone || s->connected || len == 0 || len >= sizeof s->id) return -EINVAL;
  for (size_t i = 0; i < len; i++) {
    char ch = id[i];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_'))
      return -EINVAL;
  }
  room *r = room_find(s->nsp, id, len);
  if (r && r->n) return -EEXIST; /* a live socket (or a room) has that name */
  memcpy(s->id, id, len + 1);
  return 0;
}

void sio_accept(sio_socket *s) { sio_accept_pid(s, NULL); }

void sio_accept_pid(sio_socket *s, const char *pid) {
  if (s->gone || s->connected) return;
  s->connected = true;
  s->nnext = s->nsp->sockets;
  if (s->nnext) s->nnext->nprev = s;
  s->nsp->sockets = s;
  s->nsp->nsockets++;
  rooms_add(s->nsp, s, s->id, strlen(s->id));
  char json[112];
  int n = pid && pid[0] && strlen(pid) < 40 && !strpbrk(pid, "\"\\")
              ? snprintf(json, sizeof json, "{\"sid\":\"%s\",\"pid\":\"%s\"}", s->id, pid)
              : snprintf(json, sizeof json, "{\"sid\":\"%s\"}", s->id);
  send_control(s, SIO_CONNECT, json, (size_t)n);
}

void sio_close_transport(sio_socket *s) {
  if (s->gone || s->client->closed) return;
  eio_close(s->client->es, "forced close");
}

void sio_reject(sio_socket *s, const char *json, size_t len) {
  if (s->gone) return;
  send_control(s, SIO_CONNECT_ERROR, json, len);
  socket_remove(s, "server namespace disconnect", false);
}

void sio_disconnect(sio_socket *s, bool close_client) {
  if (s->gone) return;
  sio_client *c = s->client;
  send_control(s, SIO_DISCONNECT, "", 0);
  socket_remove(s, "server namespace disconnect", true);
  if (close_client && !c->closed) eio_close(c->es, "forced close");
}

void sio_send(sio_socket *s, const char *packet, size_t len, const mw_str *atts, int natts, bool volatile_) {
  if (s->gone || s->client->closed) return;
  eio_session *es = s->client->es;
  if (volatile_ && !eio_writable(es)) return;
  eio_send(es, packet, len, false);
  for (int i = 0; i < natts; i++) eio_send(es, atts[i].p ? atts[i].p : "", atts[i].len, true);
}

int sio_join(sio_socket *s, const char *room, size_t len) {
  if (s->gone || !s->connected) return -EINVAL;
  return rooms_add(s->nsp, s, room, len);
}

int sio_leave(sio_socket *s, const char *room, size_t len) {
  if (s->gone || !s->connected) return -EINVAL;
  return rooms_del(s->nsp, s, room, len);
}

void sio_rooms(sio_socket *s, void (*cb)(void *ud, const char *room, size_t len), void *ud) {
  for (uint32_t i = 0; i < s->nrooms; i++) cb(ud, s->rooms[i].r->name, s->rooms[i].r->len);
}

typedef struct bcast {
  eio_msg msg;
  eio_msg *atts;
  int natts;
  bool volatile_;
} bcast;

static void bcast_one(void *ud, sio_socket *s) {
  bcast *b = ud;
  if (s->client->closed) return;
  eio_session *es = s->client->es;
  if (b->volatile_ && !eio_writable(es)) return;
  eio_send_msg(es, &b->msg);
  for (int i = 0; i < b->natts; i++) eio_send_msg(es, &b->atts[i]);
}

void sio_broadcast(sio_nsp *n, const sio_target *t, const char *packet, size_t len, const mw_str *atts,
                   int natts, bool volatile_) {
  bcast b = {.natts = natts, .volatile_ = volatile_};
  if (eio_msg_init(&b.msg, packet, len, false)) return;
  eio_msg stack_atts[4];
  b.atts = natts <= 4 ? stack_atts : calloc((size_t)natts, sizeof *b.atts);
  int ready = 0;
  for (; b.atts && ready < natts; ready++)
    if (eio_msg_init(&b.atts[ready], atts[ready].p ? atts[ready].p : "", atts[ready].len, true)) break;
  if (b.atts && ready == natts) rooms_each(n, t, bcast_one, &b);
  for (int i = 0; i < ready; i++) eio_msg_release(&b.atts[i]);
  if (b.atts != stack_atts) free(b.atts);
  eio_msg_release(&b.msg);
}

void sio_each(sio_nsp *n, const sio_target *t, void (*cb)(void *ud, sio_socket *s), void *ud) {
  rooms_each(n, t, cb, ud);
}

/* ---- clients (one per Engine.IO session) ---- */

static sio_socket *client_socket(sio_client *c, const char *nsp, size_t len) {
  for (sio_socket *s = c->sockets; s; s = s->cnext)
    if (!s->gone && s->nsp->len == len && memcmp(s->nsp->name, nsp, len) == 0) return s;
  return NULL;
}

static void bin_reset(sio_client *c) {
  for (int i = 0; i < c->bin_need; i++) mw_str_free(&c->bin_atts[i]);
  free(c->bin_atts);
  c->bin_atts = NULL;
  mw_str_free(&c->bin_json);
  c->bin_sock = NULL;
  c->bin_need = c->bin_got = 0;
}

static void on_connect_timeout(uv_timer_t *t) {
  sio_client *c = t->data;
  if (!c->closed && !c->sockets) eio_close(c->es, "connect timeout");
}

/* A binary packet whose attachments did not all come in time: the client
 * goes, and the ones that came with it. (The timer is the connect
 * timeout's when no namespace was joined yet; started again otherwise.) */
static void on_attachment_timeout(uv_timer_t *t) {
  sio_client *c = t->data;
  if (c->closed || !c->bin_need) return;
  mw_log(MW_LOG_WARN, "sio: session %s sent %d of the %d attachments of a binary packet in %llu ms; closing it",
         eio_sid(c->es), c->bin_got, c->bin_need, (unsigned long long)c->io->opt.attachment_timeout);
  eio_close(c->es, "transport error");
}

static void on_timer_closed(uv_handle_t *h) { free(h); }

/* Starts c's timer, made first if c has none. False when out of memory. */
static bool timer_start(sio_client *c, uv_timer_cb cb, uint64_t ms) {
  if (!c->timer) {
    c->timer = malloc(sizeof *c->timer);
    if (!c->timer) return false;
    uv_timer_init(c->io->srv->loop, c->timer);
    c->timer->data = c;
  }
  uv_timer_start(c->timer, cb, ms, 0);
  return true;
}

/* c's timer has nothing left to time: it goes (its callback never runs again). */
static void timer_drop(sio_client *c) {
  if (!c->timer) return;
  uv_close((uv_handle_t *)c->timer, on_timer_closed);
  c->timer = NULL;
}

/* The client lives in its Engine.IO session's space (sio_eio_handler.space)
 * and is freed with it, after on_eio_close and its callers are done. */
static void on_eio_open(void *ud, eio_session *es, const http_req *req) {
  sio_server *io = ud;
  sio_client *c = eio_session_space(es);
  c->io = io;
  c->es = es;
  if (!timer_start(c, on_connect_timeout, io->opt.connect_timeout)) {
    eio_close(es, "server error");
    return;
  }
  eio_set_userdata(es, c);
  io->h.on_client(io->ud, c, req);
}

static void deliver(sio_client *c, sio_socket *s, int type, const char *json, size_t len, int64_t id,
                    const mw_str *atts, int natts) {
  if (!s || s->gone || !s->connected) return; /* not (or no longer) in that namespace: ignore */
  c->io->h.on_packet(c->io->ud, s, type, json, len, id, atts, natts);
}

static void on_eio_message(void *ud, eio_session *es, const char *data, size_t len, bool binary) {
  sio_client *c = eio_userdata(es);
  if (!c || c->closed) return;
  sio_server *io = c->io;
  if (binary) {
    if (c->bin_need == 0) { /* an attachment nobody announced */
      eio_close(es, "parse error");
      return;
    }
    mw_str_append(&c->bin_atts[c->bin_got++], data, len);
    if (c->bin_got == c->bin_need) {
      timer_drop(c);
      sio_socket *s = c->bin_sock;
      int type = c->bin_type == SIO_BINARY_EVENT ? SIO_EVENT : SIO_ACK;
      mw_str json = c->bin_json;
      mw_str *atts = c->bin_atts;
      int n = c->bin_need;
      int64_t id = c->bin_id;
      c->bin_json = (mw_str){0};
      c->bin_atts = NULL;
      c->bin_need = c->bin_got = 0;
      c->bin_sock = NULL;
      deliver(c, s, type, json.p ? json.p : "", json.len, id, atts, n);
      for (int i = 0; i < n; i++) mw_str_free(&atts[i]);
      free(atts);
      mw_str_free(&json);
    }
    return;
  }
  if (c->bin_need) { /* text while attachments were expected */
    eio_close(es, "parse error");
    return;
  }
  sio_packet p;
  if (sio_packet_decode(data, len, &p) != 0) {
    eio_close(es, "parse error");
    return;
  }
  sio_socket *s = client_socket(c, p.nsp, p.nsp_len);
  switch (p.type) {
  case SIO_CONNECT: {
    if (s) return; /* already there */
    sio_nsp *n = nsp_find(io, p.nsp, p.nsp_len);
    if (n && !n->adopted && !io->dynamic) n = NULL;
    /* Dynamic namespaces: the app decides (on_connect) whether the name is one. */
    if (!n && io->dynamic && p.nsp_len <= 256) n = nsp_new(io, p.nsp, p.nsp_len, false);
    if (!n) {
      mw_str e = {0};
      sio_packet_head(&e, SIO_CONNECT_ERROR, 0, p.nsp, p.nsp_len, -1);
      mw_str_appendz(&e, "{\"message\":\"Invalid namespace\"}");
      eio_send(es, e.p, e.len, false);
      mw_str_free(&e);
      return;
    }
    s = calloc(1, sizeof *s);
    if (!s) return;
    eio_random_id(s->id);
    s->nsp = n;
    n->nrefs++;
    s->client = c;
    s->cnext = c->sockets;
    c->sockets = s;
    timer_drop(c);
    io->h.on_connect(io->ud, s, p.data, p.data_len);
    return;
  }
  case SIO_DISCONNECT:
    if (s) socket_remove(s, "client namespace disconnect", true);
    return;
  case SIO_EVENT:
  case SIO_ACK:
    deliver(c, s, p.type, p.data, p.data_len, p.id, NULL, 0);
    return;
  case SIO_BINARY_EVENT:
  case SIO_BINARY_ACK:
    if (p.attachments == 0) {
      deliver(c, s, p.type == SIO_BINARY_EVENT ? SIO_EVENT : SIO_ACK, p.data, p.data_len, p.id, NULL, 0);
      return;
    }
    c->bin_atts = calloc((size_t)p.attachments, sizeof *c->bin_atts);
    if (!c->bin_atts) {
      eio_close(es, "server error");
      return;
    }
    c->bin_sock = s;
    c->bin_type = p.type;
    c->bin_id = p.id;
    c->bin_need = p.attachments;
    c->bin_got = 0;
    mw_str_append(&c->bin_json, p.data, p.data_len);
    if (io->opt.attachment_timeout && !timer_start(c, on_attachment_timeout, io->opt.attachment_timeout))
      eio_close(es, "server error");
    return;
  default: /* CONNECT_ERROR from a client makes no sense */
    eio_close(es, "parse error");
    return;
  }
}

static void on_eio_close(void *ud, eio_session *es, const char *reason) {
  sio_client *c = eio_userdata(es);
  if (!c) return;
  sio_server *io = c->io;
  c->closed = true;
  while (c->sockets) socket_remove(c->sockets, reason, true);
  bin_reset(c);
  io->h.on_client_close(io->ud, c);
  eio_set_userdata(es, NULL);
  c->es = NULL;
  timer_drop(c);
}

static const eio_handler sio_eio_handler = {on_eio_open, on_eio_message, on_eio_close, sizeof(sio_client)};

int sio_server_new(sio_server **out, struct mw_server *srv, const eio_options *o, const sio_handler *h,
                   void *ud) {
  sio_server *io = calloc(1, sizeof *io);
  if (!io) return -ENOMEM;
  io->srv = srv;
  io->h = *h;
  io->ud = ud;
  sio_options_defaults(&io->opt);
  int r = eio_server_new(&io->eio, srv, o, &sio_eio_handler, io);
  if (r) {
    free(io);
    return r;
  }
  sio_nsp_get(io, "/", 1, true);
  *out = io;
  return 0;
}

eio_server *sio_engine(sio_server *io) { return io->eio; }
void sio_options_defaults(sio_options *o) {
  o->connect_timeout = SIO_DEFAULT_CONNECT_TIMEOUT_MS;
  o->attachment_timeout = SIO_DEFAULT_ATTACHMENT_TIMEOUT_MS;
}

void sio_configure(sio_server *io, const sio_options *o) { io->opt = *o; }
const sio_options *sio_get_options(sio_server *io) { return &io->opt; }

void sio_server_free(sio_server *io) {
  if (!io) return;
  eio_server_free(io->eio); /* closes every session: sockets leave first */
  for (sio_nsp *n = io->nsps, *next; n; n = next) {
    next = n->next;
    nsp_free(n);
  }
  free(io);
}

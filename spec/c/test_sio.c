/* test_sio.c — Socket.IO over socketless connections: CONNECT, a
 * broadcast that reaches every recipient as the very same buffer (encoded
 * and framed once), minus the excluded socket and rooms; namespaces on
 * trial (dynamic namespaces) and a recovered session's id and pid. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "config.h"
#include "eio.h"
#include "http.h"
#include "server.h"
#include "sio.h"

/* What answers the requests of the connections made here (their attach
 * function's user data). */
static http_site app_site;

static uv_loop_t loop;
static mw_server srv;
static sio_server *io;
static sio_socket *last;
static int mode; /* 0: accept at once; 1: leave the answer to the test */

static void handler(void *ud, const http_req *req, http_res *res) {
  if (eio_handle_http(sio_engine(io), req, res) != 0) http_res_simple(res, 404, "text/plain", "no");
}

static void on_client(void *ud, sio_client *c, const http_req *req) {}
static void on_client_close(void *ud, sio_client *c) {}
static void on_connect(void *ud, sio_socket *s, const char *auth, size_t len) {
  if (mode == 0) sio_accept(s);
  last = s;
}
static void on_packet(void *ud, sio_socket *s, int type, const char *json, size_t len, int64_t id,
                      const mw_str *atts, int natts) {}
static void on_disconnect(void *ud, sio_socket *s, const char *reason) {}
static const sio_handler h = {on_client, on_client_close, on_connect, on_packet, on_disconnect};

/* A masked client text frame (payload under 126 bytes). */
static void send_frame(mw_conn *c, const char *text) {
  unsigned char f[160];
  size_t n = strlen(text);
  const unsigned char mask[4] = {1, 2, 3, 4};
  f[0] = 0x81;
  f[1] = (unsigned char)(0x80 | n);
  memcpy(f + 2, mask, 4);
  for (size_t i = 0; i < n; i++) f[6 + i] = (unsigned char)text[i] ^ mask[i % 4];
  c->proto->on_read(c, (const char *)f, 6 + n);
}

/* A websocket-first Socket.IO client that has joined "/". */
static mw_conn *client(sio_socket **out) {
  static const char up[] = "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: t\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
  mw_conn *c = mw_conn_new(&srv, false, http_conn_attach, &app_site);
  c->proto->on_read(c, up, sizeof up - 1);
  last = NULL;
  send_frame(c, "40");
  *out = last;
  return c;
}

static mw_wq_item *tail(mw_conn *c) { return c->wq_len ? &c->wq[c->wq_len - 1] : NULL; }

static void test_broadcast_is_shared(void) {
  sio_socket *s1, *s2, *s3;
  mw_conn *c1 = client(&s1), *c2 = client(&s2), *c3 = client(&s3);
  CHECK(s1 && s2 && s3);
  CHECK(sio_socket_connected(s1) && sio_socket_connected(s2) && sio_socket_connected(s3));
  sio_nsp *n = sio_nsp_get(io, "/", 1, false);
  uint32_t before3 = c3->wq_len;
  const char pkt[] = "42[\"chat message\",\"hi\"]";
  sio_target t = {.except_socket = s3};
  sio_broadcast(n, &t, pkt, sizeof pkt - 1, NULL, 0, false);
  mw_wq_item *a = tail(c1), *b = tail(c2);
  CHECK(a && b && a->buf == b->buf); /* one buffer for every recipient */
  CHECK(a && a->buf->refs >= 2);
  /* The queued bytes are one websocket frame: 0x81, length, "4" + packet. */
  CHECK(a && a->len == 2 + 1 + sizeof pkt - 1);
  CHECK(a && (unsigned char)a->buf->data[a->off] == 0x81);
  CHECK(a && memcmp(a->buf->data + a->off + 3, pkt, sizeof pkt - 1) == 0);
  CHECK(c3->wq_len == before3); /* the excluded socket got nothing */

  /* Rooms: only members, each once even when in two of the rooms. */
  sio_join(s1, "r", 1);
  sio_join(s1, "q", 1);
  sio_join(s2, "q", 1);
  uint32_t w1 = c1->wq_len, w2 = c2->wq_len, w3 = c3->wq_len;
  const char *rooms[] = {"r", "q"};
  size_t lens[] = {1, 1};
  const char *except[] = {"r"};
  sio_target rt = {.rooms = rooms, .room_lens = lens, .nrooms = 2};
  sio_broadcast(n, &rt, pkt, sizeof pkt - 1, NULL, 0, false);
  CHECK(c1->wq_len == w1 + 1 && c2->wq_len == w2 + 1 && c3->wq_len == w3);
  sio_target et = {.rooms = rooms + 1, .room_lens = lens, .nrooms = 1, .except = except, .except_lens = lens,
                   .nexcept = 1};
  sio_broadcast(n, &et, pkt, sizeof pkt - 1, NULL, 0, false);
  CHECK(c1->wq_len == w1 + 1 && c2->wq_len == w2 + 2);

  mw_conn_close(c1);
  mw_conn_close(c2);
  mw_conn_close(c3);
  while (srv.nconns) uv_run(&loop, UV_RUN_NOWAIT);
}

/* The text of the last websocket frame queued on c (unmasked, short). */
static const char *last_text(mw_conn *c, size_t *len) {
  mw_wq_item *it = tail(c);
  if (!it) return NULL;
  const unsigned char *f = (const unsigned char *)it->buf->data + it->off;
  *len = f[1] & 0x7f;
  return (const char *)f + 2;
}

static bool sent(mw_conn *c, const char *text) {
  size_t len;
  const char *p = last_text(c, &len);
  return p && len == strlen(text) && memcmp(p, text, len) == 0;
}

static void test_trial_namespaces_and_recovery(void) {
  sio_socket *s;
  mode = 1;
  mw_conn *c = client(&s); /* "/" waits for the test's answer */
  CHECK(s != NULL);
  CHECK(sio_socket_set_id(s, "bad id!") == -EINVAL);
  CHECK(sio_socket_set_id(s, "recoveredSocketId_01") == 0);
  sio_accept_pid(s, "privateSessionId0001");
  CHECK(sent(c, "40{\"sid\":\"recoveredSocketId_01\",\"pid\":\"privateSessionId0001\"}"));
  CHECK(sio_socket_set_id(s, "other") == -EINVAL); /* too late: accepted */

  /* Without dynamic namespaces an unknown name is refused by the core. */
  last = NULL;
  send_frame(c, "40/dyn-1,");
  CHECK(last == NULL && sent(c, "44/dyn-1,{\"message\":\"Invalid namespace\"}"));

  /* With them, the app sees the CONNECT on a namespace on trial... */
  sio_set_dynamic(io, true);
  send_frame(c, "40/dyn-1,");
  sio_socket *d = last;
  CHECK(d != NULL && strcmp(sio_nsp_name(sio_socket_nsp(d)), "/dyn-1") == 0);
  CHECK(sio_nsp_get(io, "/dyn-1", 6, false) == NULL); /* not the app's yet */
  sio_reject(d, "{\"message\":\"Invalid namespace\"}", 31);
  CHECK(sio_nsp_get(io, "/dyn-1", 6, false) == NULL); /* refused: gone */
  /* ...and adopting it makes it a namespace like any other. */
  last = NULL;
  send_frame(c, "40/dyn-2,");
  d = last;
  CHECK(d != NULL);
  CHECK(sio_nsp_get(io, "/dyn-2", 6, true) != NULL);
  sio_accept(d);
  CHECK(sio_socket_connected(d));
  CHECK(sio_nsp_get(io, "/dyn-2", 6, false) != NULL);
  sio_set_dynamic(io, false);
  mode = 0;

  mw_conn_close(c);
  while (srv.nconns) uv_run(&loop, UV_RUN_NOWAIT);
  CHECK(sio_nsp_get(io, "/dyn-2", 6, false) != NULL); /* adopted ones stay */
}

int main(void) {
  mw_config cfg;
  mw_config_defaults(&cfg);
  cfg.http.quiet = true;
  uv_loop_init(&loop);
  mw_server_init(&srv, &loop, &cfg.server);
  app_site = (http_site){{handler, NULL}, cfg.http};
  eio_options o;
  eio_options_defaults(&o, "/socket.io/");
  if (sio_server_new(&io, &srv, &o, &h, NULL)) return 1;

  test_broadcast_is_shared();
  test_trial_namespaces_and_recovery();

  sio_server_free(io);
  mw_server_close(&srv);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  CHECK_REPORT();
  return failed ? 1 : 0;
}

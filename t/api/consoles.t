# Consoles of every shape (issue 16), proxied (t/bin/console.py) and
# in-process (t/c-modules/et_console), in both formats:
# - update and delete answers without the id ({} from json-server, the
#   changed fields only): the request path names the object;
# - envelopes (EventTriggerObject /data, Rails' /application root), the id
#   under a pointer (EventTriggerIdField /attributes/apikey); a pointer
#   that finds nothing is recorded as failed with its reason;
# - JSON-RPC (EventTrigger jsonrpc): one event per answered call, none for
#   an error answered 200, a batch in the request's order; the request body
#   the console reads is the one sent, byte for byte (Content-Length and
#   chunked, HTTP/1.1 and HTTP/2);
# - POST for updates and deletes (EventTriggerEvent, the id from a
#   <LocationMatch> group);
# - an HTML answer says so (ET00034 "answer is text/html, not JSON").
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Digest::SHA qw(sha1_hex);
use JSON::PP ();
use ETTest qw(:all);

start_console();
start_receiver(truncate => 1);

my $J = JSON::PP->new->canonical->allow_nonref;
my %root = (et_json => '/hooks/json', et_form => '/hooks/form', et_h2 => '/hooks/h2');
my %format = (et_json => 'json', et_form => 'form', et_h2 => 'json');
my @checks;     # [name, site, object, id, event, expected body]

sub expect {
    my($name, $site, $object, $id, $event, $body) = @_;
    push @checks, [$name, $site, $object, $id, $event,
                   { %$body, object_type => $body->{object_type} // $object }];
}

my @consoles = qw(proxy inproc);

# -- answers without the id ------------------------------------------------
for my $site (qw(et_json et_form)) {
    for my $c (@consoles) {
        my $id = uniq("jsonserver-$c");
        my $res = request($site, DELETE => "/$c/member/$id",
                          headers => { 'X-Console-Shape' => 'empty' });
        is($res->code, 200, "json-server delete answered {} ($site, $c)");
        expect("delete answered {} ($site, $c)", $site, 'member', $id,
               'post-delete', { id => $id });

        $id = uniq("partial-$c");
        $res = request($site, PATCH => "/$c/application/$id",
                       json => { name => 'renamed' },
                       headers => { 'X-Console-Shape' => 'noid' });
        is($res->code, 200, "update answered without the id ($site, $c)");
        expect("update answered without the id ($site, $c)", $site,
               'application', $id, 'post-update', { name => 'renamed', id => $id });
    }
}

# -- envelopes -----------------------------------------------------------------
for my $site (qw(et_json et_form)) {
    for my $c (@consoles) {
        my $id = uniq("env-$c");
        my $res = request($site, POST => "/$c/env/member",
                          json => { id => $id, username => 'wrapped' },
                          headers => { 'X-Console-Shape' => 'wrap:data' });
        is($res->code, 201, "create answered {\"data\": ...} ($site, $c)");
        expect("envelope /data ($site, $c)", $site, 'member', $id,
               'post-create', { id => $id, username => 'wrapped' });

        my $ak = uniq("jsonapi-$c");
        $res = request($site, POST => "/$c/env/key",
                       json => { type => 'keys', attributes => { apikey => $ak, status => 'active' } },
                       headers => { 'X-Console-Shape' => 'wrap:data' });
        my $saved = (response_json($res) // {})->{data} // {};
        is($res->code, 201, "JSON:API create ($site, $c)");
        expect("JSON:API, id at /attributes/apikey ($site, $c)", $site, 'key',
               $ak, 'post-create', $saved);
    }
}
{
    my $id = uniq('rails');
    my $res = request('et_json', PUT => "/proxy/rails/application/$id",
                      json => { name => 'root' },
                      headers => { 'X-Console-Shape' => 'wrap:application' });
    is($res->code, 200, 'Rails-style root answered');
    expect('Rails-style root /application', 'et_json', 'application', $id,
           'post-update', { id => $id, name => 'root' });
}

# -- POST for update and delete -----------------------------------------------
for my $c (@consoles) {
    my $id = uniq("postedit-$c");
    my $res = request('et_json', POST => "/$c/post/member/$id/edit",
                      json => { email => 'e@example.com' },
                      headers => { 'X-Console-Shape' => 'noid' });
    ok($res->is_success, "POST .../edit answered ($c)");
    expect("POST for update, id from <LocationMatch> ($c)", 'et_json',
           'member', $id, 'post-update', { email => 'e@example.com', id => $id });

    $id = uniq("postdel-$c");
    $res = request('et_form', POST => "/$c/post/member/$id/delete",
                   headers => { 'X-Console-Shape' => 'empty' });
    ok($res->is_success, "POST .../delete answered ($c)");
    expect("POST for delete, id from <LocationMatch> ($c)", 'et_form',
           'member', $id, 'post-delete', { id => $id });
}

# -- JSON-RPC ------------------------------------------------------------------
sub rpc {
    my($site, $c, $payload, %h) = @_;
    return request($site, POST => "/$c/rpc",
                   content => ref $payload ? $J->encode($payload) : $payload,
                   headers => { 'X-Console-Shape' => 'jsonrpc', %h });
}

my @order;      # [site, [txn order expected as (object, id, event)]]
for my $site (qw(et_json et_form)) {
    for my $c (@consoles) {
        # Mashery V2: one call, 1.0 style, the member named by username
        my $u = uniq("v2-$c");
        my $res = rpc($site, $c, { method => 'member.create',
                                   params => [{ username => $u, email => 'v2@example.com' }],
                                   id => 1 });
        my $ans = response_json($res) // {};
        ok($res->code == 200 && $ans->{result}, "member.create answered ($site, $c)");
        expect("JSON-RPC member.create ($site, $c)", $site, 'member', $u,
               'post-create', $ans->{result} // {});

        # an error answered 200: no event
        my $bad = uniq("rpcerr-$c");
        $res = rpc($site, $c, { method => 'member.create',
                                params => [{ username => $bad, fail => JSON::PP::true }],
                                id => 2 });
        ok($res->code == 200 && (response_json($res) // {})->{error},
           "a refused member.create is answered 200 with an error ($site, $c)");
        push @checks, ["JSON-RPC error answered 200: no call ($site, $c)",
                       $site, 'member', $bad, undef];

        # a batch: create and update of one member, a fetch (no event), a
        # refused update, a key delete named by its param
        my $m = uniq("batch-$c");
        my $k = uniq("batchkey-$c");
        $res = rpc($site, $c, [
            { jsonrpc => '2.0', method => 'member.create', params => [{ username => $m, n => 1 }], id => 'a' },
            { jsonrpc => '2.0', method => 'member.fetch', params => [$m], id => 'b' },
            { jsonrpc => '2.0', method => 'member.update', params => [{ username => $m, n => 2 }], id => 'c' },
            { jsonrpc => '2.0', method => 'member.update', params => [{ username => $m, fail => JSON::PP::true }], id => 'd' },
            { jsonrpc => '2.0', method => 'key.delete', params => [$k], id => 'e' },
        ]);
        is($res->code, 200, "a batch of five calls answered ($site, $c)");
        expect("batch: member.create ($site, $c)", $site, 'member', $m,
               'post-create', { username => $m, n => 1 });
        expect("batch: member.update ($site, $c)", $site, 'member', $m,
               'post-update', { username => $m, n => 2 });
        expect("batch: key.delete named by its param ($site, $c)", $site,
               'key', $k, 'post-delete', { apikey => $k });
        push @order, ["batch stored in the request's order ($site, $c)",
                      [[member => $m, 'post-create'], [member => $m, 'post-update'],
                       [key => $k, 'post-delete']]];
    }
}

# The request body reaches the console byte for byte: Content-Length and
# chunked over HTTP/1.1, and HTTP/2; the events are made all the same.
for my $t (['et_json', 0, 0], ['et_json', 1, 0], ['et_h2', 0, 1], ['et_h2', 1, 1]) {
    my($site, $chunked, $h2) = @$t;
    for my $c (@consoles) {
        my $u = uniq("bytes-$c-$chunked$h2");
        # odd spacing, escapes and UTF-8 the module must not touch
        my $body = qq({ "method" : "member.create",\n\t"params": [ {"username": "$u",)
                 . qq( "note": "caf\xc3\xa9 \\u00e9 \\"q\\"", "pad": ") . ('x' x 20000)
                 . qq("} ], "id": 7 }\n);
        my $r = curl_send(site => $site, path => "/$c/rpc", body => $body,
                          chunked => $chunked, h2 => $h2,
                          headers => ['X-Console-Shape: jsonrpc']);
        my($code, $ver, $h) = @$r{qw(code version headers)};
        my $how = ($chunked ? 'chunked' : 'Content-Length') . ', HTTP/'
                . ($h2 ? '2' : '1.1') . ", $c";
        is("$code $ver", $h2 ? '200 2' : '200 1.1', "JSON-RPC over $how answered");
        is($h->{'x-console-body-sha1'} // '', sha1_hex($body),
           "the console read the body as sent ($how)");
        push @checks, ["the event of a request sent $how", $site, 'member', $u,
                       'post-create', undef, 'any'];
    }
}

# -- failures that are recorded, with their reason ------------------------------
my @failed;     # [name, txn-from-response, reason]
for my $c (@consoles) {
    my $id = uniq("nodata-$c");
    my $res = request('et_json', POST => "/$c/env/member", json => { id => $id });
    is($res->code, 201, "unwrapped answer at an envelope location ($c)");
    push @failed, ["EventTriggerObject /data that finds nothing ($c)", $id,
                   'EventTriggerObject /data finds nothing in the answer',
                   "/$c/env/member"];

    $id = uniq("html-$c");
    $res = request('et_json', POST => "/$c/member", json => { id => $id },
                   headers => { 'X-Console-Shape' => 'html' });
    is($res->code, 201, "an HTML answer ($c)");
    push @failed, ["an HTML answer says so ($c)", $id,
                   'answer is text/html, not JSON', "/$c/member"];
}

# -- what arrived ---------------------------------------------------------------
ok(marker(), 'a marker made after everything arrived');
ok(marker(site => 'et_form'), 'and one on the form site');
for my $ch (@checks) {
    my($name, $site, $object, $id, $event, $body, $any) = @$ch;
    if (!defined $event) {
        my @got = calls_for_id($id);
        is(scalar @got, 0, $name);
        next;
    }
    my $calls = wait_calls($id, n => 1, timeout => 20);
    my @mine = grep { my %q = parse_query($_->{query}); $q{event} eq $event } @$calls;
    if ($any) {
        is(scalar @mine, 1, $name);
        next;
    }
    check_call(\@mine, name => $name, root => $root{$site}, object => $object,
               id => $id, event => $event, format => $format{$site},
               body => $body);
}
for my $o (@order) {
    my($name, $want) = @$o;
    my $where = join ' OR ', map {
        "(object = " . sql_quote($_->[0]) . " AND oid = " . sql_quote($_->[1])
        . " AND event = " . sql_quote($_->[2]) . ")" } @$want;
    my $rows = outbox("SELECT object, oid, event FROM et_event WHERE $where ORDER BY id");
    is(join(' ', map { "$_->{object}:$_->{event}" } @$rows),
       join(' ', map { "$_->[0]:$_->[2]" } @$want), $name);
}
for my $f (@failed) {
    my($name, $id, $reason, $uri) = @$f;
    my $rows = outbox("SELECT txn, state, error FROM et_event WHERE oid = ''"
                      . " AND error = " . sql_quote($reason)
                      . " AND url LIKE '%/v1/member%'");
    # each case's own row: the one logged with its request line
    my @log = grep { /ET00034: member post-create not sent: \Q$reason\E \[POST \Q$uri\E\] \(txn=([0-9a-f]{32}), recorded as failed\)/ }
        do { open my $fh, '<', t_path('t_logs', 'error_log'); <$fh> };
    my %logged = map { /txn=([0-9a-f]{32})/ ? ($1 => 1) : () } @log;
    ok((grep { $_->{state} == 3 && $logged{$_->{txn}} } @$rows) >= 1,
       "$name: recorded as failed, and logged with its txn and request")
        or diag(explain($rows), @log);
    is(scalar calls_for_id($id), 0, "$name: no call");
}

done_testing();

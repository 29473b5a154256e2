# What must make no call: error answers, GET and HEAD, subrequests (with a
# mapping method, and GET ones from mod_include), "EventTrigger off" nested
# in a mapped location, unmapped locations, and a site without an endpoint
# (although the main server has one). "No call" is asserted after a marker
# event made later has arrived, never after a fixed sleep.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use ETTest qw(:all);

start_console();
start_receiver(truncate => 1);

# [name, site, method, path-with-{id}, json body (id put in for POST), headers,
#  expected status]
my @cases = (
    ['409 from the proxied console', 'et_json', POST => '/proxy/member', {},
     { 'X-Console-Status' => 409 }, 409],
    ['422 from the in-process console', 'et_form', POST => '/inproc/key', {},
     { 'X-Console-Status' => 422 }, 422],
    ['404 to a DELETE', 'et_json', DELETE => '/proxy/application/{id}', undef,
     { 'X-Console-Status' => 404 }, 404],
    ['500 from the proxied console', 'et_json', PUT => '/proxy/member/{id}', {},
     { 'X-Console-Status' => 500 }, 500],
    ['503 from the in-process console', 'et_json', PATCH => '/inproc/package_key/{id}',
     {}, { 'X-Console-Status' => 503 }, 503],
    ['GET, proxied', 'et_json', GET => '/proxy/member/{id}', undef, {}, 200],
    ['GET, in-process', 'et_form', GET => '/inproc/member/{id}', undef, {}, 200],
    ['HEAD, proxied', 'et_json', HEAD => '/proxy/member/{id}', undef, {}, 200],
    ['HEAD, in-process', 'et_json', HEAD => '/inproc/key/{id}', undef, {}, 200],
    ['EventTrigger off (proxied)', 'et_json', POST => '/proxy/member/off', {}, {}, 201],
    ['EventTrigger off (in-process)', 'et_json', PUT => '/inproc/member/off/{id}', {},
     {}, 200],
    ['unmapped location (proxied)', 'et_json', POST => '/unmapped/member', {}, {}, 201],
    ['unmapped location (in-process)', 'et_json', DELETE => '/inproc/unmapped/member/{id}',
     undef, {}, 200],
    ['site without endpoint, create', 'et_none', POST => '/proxy/member', {}, {}, 201],
    ['site without endpoint, update', 'et_none', PUT => '/inproc/key/{id}', {}, {}, 200],
    ['site without endpoint, delete', 'et_none', DELETE => '/proxy/member/{id}', undef,
     {}, 200],
    ['site without endpoint, main server location', 'et_none', POST => '/main/member',
     {}, {}, 201],
);

# Subrequests (t/c-modules/et_console's et-subreq): [name, method, uri]
my @subreqs = (
    ['PUT subrequest to the in-process console', PUT => '/inproc/member/{id}'],
    ['PUT subrequest to the proxied console', PUT => '/proxy/member/{id}'],
    ['DELETE subrequest to the in-process console', DELETE => '/inproc/key/{id}'],
    ['PATCH subrequest to the proxied console', PATCH => '/proxy/application/{id}'],
    ['POST subrequest to the in-process console', POST => '/inproc/member'],
);

plan tests => @cases * 2 + @subreqs * 2 + 2   # SSI
            + 2                                # the control: the main server sends
            + 1                                # marker
            + 2;                               # outbox

my @ids;    # [name, id]

for my $c (@cases) {
    my($name, $site, $method, $path, $json, $headers, $want) = @$c;
    my $id = uniq('neg');
    (my $p = $path) =~ s/\{id\}/$id/;
    my %a = (headers => $headers);
    if ($json) {
        $a{json} = { %$json, name => $name };
        $a{json}{id} = $id if $method eq 'POST';
    }
    my $res = request($site, $method => $p, %a);
    is($res->code, $want, "$name: the console answered $want")
        or diag($res->as_string);
    push @ids, [$name, $id];
}

for my $s (@subreqs) {
    my($name, $method, $uri) = @$s;
    my $id = uniq('subreq');
    (my $u = $uri) =~ s/\{id\}/$id/;
    my $res = request('et_json', GET => "/subreq?m=$method&u=$u");
    like($res->content, qr/subreq-status: 20[01]\s*\z/,
         "$name: the subrequest succeeded") or diag($res->as_string);
    # a POST subrequest gets an id from the console: read it from the output
    if ($method eq 'POST' && $res->content =~ /"id":\s*"([^"]+)"/) {
        $id = $1;
    }
    push @ids, [$name, $id];
}

{
    my $id = uniq('ssi');
    my $res = request('et_json', GET => "/ssi/include.shtml?$id");
    my @n = $res->content =~ /"id":\s*"\Q$id\E"/g;
    is(scalar @n, 2, 'SSI: both GET subrequests to mapped locations ran')
        or diag($res->as_string);
    push @ids, ['SSI include virtual', $id];
}

# The control: the main server's own mapped location sends to its endpoint.
my $main_id = uniq('main');
my $res = request('main', POST => '/main/member', json => { id => $main_id });
is($res->code, 201, 'main server: create answered');

ok(marker(), 'marker call arrived');

my $main_calls = wait_calls($main_id);
ok(@$main_calls == 1 && $main_calls->[0]{path} eq "/hooks/main/v1/member/$main_id",
   'the main server sends to its own endpoint')
    or diag(explain $main_calls);

for my $i (@ids) {
    my($name, $id) = @$i;
    my @c = calls_for_id($id);
    is(scalar @c, 0, "$name: no call") or diag(explain \@c);
}

my $in = join ',', map { sql_quote($_->[1]) } @ids;
my $rows = outbox("SELECT id, site, oid, state FROM et_event "
                  . "WHERE oid IN ($in) AND state IN (0, 1)");
is(scalar @$rows, 0, 'no pending or delivered outbox row for any of them')
    or diag(explain $rows);

my $none = outbox("SELECT id, site, oid, state FROM et_event WHERE state = 0 "
                  . "AND oid LIKE 'neg-%' AND site LIKE '%:"
                  . (site_url('et_none') =~ /:(\d+)$/)[0] . "'");
is(scalar @$none, 0, 'nothing waits in the outbox for the site without endpoint')
    or diag(explain $none);

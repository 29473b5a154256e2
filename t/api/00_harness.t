# The test harness itself, without relying on mod_eventtrigger: both
# consoles, the subrequest and SSI helpers, the receiver, HTTP/2, the PHP
# form decoder and the sqlite3 CLI. When these fail, the other tests'
# failures say nothing about the module.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use ETTest qw(:all);

plan tests => 32;

start_console();
my $rlog = receiver_log();
start_receiver(truncate => 1);

# Unmapped locations of et_json: whatever the module does, no event.
my %base = (proxy => '/unmapped', inproc => '/inproc/unmapped');

for my $console (qw(proxy inproc)) {
    my $b = $base{$console};
    my $res = request('et_json', POST => "$b/member",
                      json => { username => "dev\x{fc}" });
    my $d = response_json($res);
    is($res->code, 201, "$console: POST answers 201");
    ok($d && length($d->{id} // '') && $d->{username} eq "dev\x{fc}",
       "$console: POST assigns an id and keeps the data")
        or diag($res->as_string);

    $res = request('et_json', PUT => "$b/member/a%20b%3Fc",
                   json => { n => 1 });
    is_deeply(response_json($res), { id => 'a b?c', n => 1 },
              "$console: PUT takes the id from the decoded path");

    $res = request('et_json', DELETE => "$b/member/x1?nobody=1");
    ok($res->code == 204 && $res->content eq '', "$console: DELETE ?nobody=1 is 204");

    $res = request('et_json', DELETE => "$b/member/x1");
    is_deeply([$res->code, response_json($res)], [200, { id => 'x1' }],
              "$console: DELETE answers {id}");

    $res = request('et_json', POST => "$b/member", json => {},
                   headers => { 'X-Console-Status' => 409 });
    is($res->code, 409, "$console: X-Console-Status forces the status");

    $res = request('et_json', PATCH => "$b/member/c1",
                   json => { list => [1 .. 50] },
                   headers => { 'X-Console-Chunked' => 1 });
    is_deeply(response_json($res), { id => 'c1', list => [1 .. 50] },
              "$console: chunked answer");
    is($res->header('Client-Transfer-Encoding'), 'chunked',
       "$console: the answer came chunked")
        or diag($res->headers->as_string);

    $res = request('et_json', POST => "$b/member", content => '{"a":',
                   headers => { 'X-Console-Raw' => 1 });
    is($res->content, '{"a":', "$console: X-Console-Raw echoes the body");

    $res = request('et_json', POST => "$b/member", content => '[1]');
    is($res->code, 400, "$console: a non-object is refused");
}

# Subrequests made by t/c-modules/et_console's et-subreq handler.
for my $console (qw(proxy inproc)) {
    my $res = request('et_json', GET =>
                      "/subreq?m=PUT&u=$base{$console}/member/sr1");
    like($res->content, qr/"id":\s*"sr1".*subreq-status: 200/s,
         "$console: PUT subrequest runs")
        or diag($res->as_string);
}
my $res = request('et_json', GET => '/ssi/include.shtml?ssi1');
my @n = $res->content =~ /"id":\s*"ssi1"/g;
is(scalar @n, 2, 'SSI includes both consoles (GET subrequests)')
    or diag($res->as_string);

# The receiver records a call as it came.
my $rport = define('ET_RECEIVER_PORT');
my $ua = LWP::UserAgent->new;
$res = $ua->request(HTTP::Request->new(
    PUT => "http://127.0.0.1:$rport/hooks/x/v1/member/a%2Fb%20c?event=post-create&txn=t",
    ['Content-Type' => 'application/json'], '{"k":"\u00fc"}'));
is($res->code, 200, 'receiver answers 200');
my @c = grep { $_->{path} =~ m{^/hooks/x/} } calls($rlog);
is(scalar @c, 1, 'receiver logged one call');
is_deeply([@{ $c[0] }{qw(method path query body)}],
          ['PUT', '/hooks/x/v1/member/a%2Fb%20c', 'event=post-create&txn=t',
           '{"k":"\u00fc"}'],
          'receiver keeps the raw path, query and body');
is($c[0]{headers}{'content-type'}, 'application/json', 'receiver: headers');
is(scalar calls_for_id('a/b c', $rlog), 1, 'calls_for_id decodes the segment');

# HTTP/2 cleartext with prior knowledge: curl for one request, nghttp for
# several streams on one connection.
my($code, $ver, $body) = curl_h2('et_h2', POST => '/unmapped/member', { id => 'h2' });
is_deeply([$code, $ver, response_json(HTTP::Response->new(200, '', [], $body))],
          [201, 2, { id => 'h2' }], 'h2c: curl POST over HTTP/2');
my $st = nghttp_streams('et_h2', PUT => { k => 'v' },
                        '/inproc/unmapped/member/s1', '/unmapped/member/s2');
is_deeply($st, { '/inproc/unmapped/member/s1' => 200, '/unmapped/member/s2' => 200 },
          'h2c: nghttp streams on one connection');

# PHP decodes bracket notation.
is_deeply(form_normalize(form_decode(
              'a[b]=1&l[0][p]=second&l[1][p]=x+y&n=&t=true&u=%C3%BC')),
          form_expect({ a => { b => 1 }, l => [{ p => 'second' }, { p => 'x y' }],
                        n => undef, t => JSON::PP::true(), u => "\x{fc}",
                        e => {}, ea => [] }),
          'PHP parse_str and the form convention agree');

is(system("sqlite3 :memory: 'select 1' >/dev/null") >> 8, 0, 'sqlite3 CLI runs');

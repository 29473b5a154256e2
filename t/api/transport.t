# How the admin's request and the console's answer travel must not matter:
# Content-Length or chunked answers, several requests on one keep-alive
# connection, HTTP/2 (h2c) single requests and concurrent streams, and
# mod_deflate compressing the answer after the capture (with the client's
# Accept-Encoding given back whole, even in several lines).
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Compress::Zlib ();
use HTTP::Request ();
use JSON::PP ();
use LWP::UserAgent ();
use ETTest qw(:all);

plan tests => 15     # the transports' own checks, and the marker
            + 16;    # the calls

start_console();
start_receiver(truncate => 1);

my @checks;    # [id, event, root, object, expected body] checked at the end

# -- Content-Length and chunked answers ---------------------------------------
for my $c (['proxy', 0], ['proxy', 1], ['inproc', 1]) {
    my($console, $chunked) = @$c;
    my $id = uniq("framing-$console-$chunked");
    my $res = request('et_json', POST => "/$console/member",
                      json => { id => $id, username => 'framing', n => [1 .. 300] },
                      headers => $chunked ? { 'X-Console-Chunked' => 1 } : {});
    push @checks, [$id, 'post-create', '/hooks/json', 'member',
                   expected_object($res, 'member'),
                   "$console " . ($chunked ? 'chunked' : 'Content-Length')];
}
{
    # the proxied chunked answer reached the client chunked (so the capture
    # saw it in pieces)
    my $res = request('et_json', PUT => '/proxy/member/' . uniq('probe'),
                      json => {}, headers => { 'X-Console-Chunked' => 1 });
    is($res->header('Client-Transfer-Encoding'), 'chunked',
       'a chunked console answer stays chunked through the proxy');
}

# -- keep-alive: four requests on one connection -------------------------------
{
    my $sock = http1_connect('et_json');
    my($a, $b, $c) = map { uniq("ka$_") } 1 .. 3;
    my @reqs = (
        [POST => '/proxy/member', json => { id => $a, k => 1 }],
        [PUT => "/proxy/member/$a", json => { k => 2 },
         headers => { 'X-Console-Chunked' => 1 }],
        [POST => '/inproc/key', json => { id => $b, apikey => 'kk' }],
        [DELETE => "/inproc/application/$c?nobody=1"],
    );
    my @want = (201, 200, 201, 204);
    my @answers;
    for my $i (0 .. $#reqs) {
        my($m, $p, %a) = @{ $reqs[$i] };
        my $r = http1_request($sock, $m, $p, %a);
        is($r && $r->{status}, $want[$i], "keep-alive request $i: $m $p")
            or diag(explain $r);
        push @answers, $r;
    }
    ok(defined http1_request($sock, GET => '/inproc/member/x'),
       'the connection is still open after the events');
    close $sock;

    my $data = sub { expected_object(json_of($_[0]{body} // 'null') // {}, $_[1]) };
    push @checks,
        [$a, 'post-create', '/hooks/json', 'member', $data->($answers[0], 'member'),
         'keep-alive 1'],
        [$a, 'post-update', '/hooks/json', 'member', $data->($answers[1], 'member'),
         'keep-alive 2 (chunked)'],
        [$b, 'post-create', '/hooks/json', 'key', $data->($answers[2], 'key'),
         'keep-alive 3 (in-process)'],
        [$c, 'post-delete', '/hooks/json', 'application',
         { id => $c, object_type => 'application' }, 'keep-alive 4 (204)'];
}

# -- HTTP/2 ---------------------------------------------------------------------
{
    my $a = uniq('h2-proxy');
    my($code, $ver, $body) = curl_h2('et_h2', POST => '/proxy/member',
                                     { id => $a, username => 'h2' });
    is("$code $ver", '201 2', 'h2c: POST to the proxied console');
    push @checks, [$a, 'post-create', '/hooks/h2', 'member',
                   expected_object(json_of($body), 'member'), 'h2 proxied create'];

    my $b = uniq('h2-inproc');
    ($code, $ver, $body) = curl_h2('et_h2', PATCH => "/inproc/application/$b",
                                   { name => 'h2 app' });
    is("$code $ver", '200 2', 'h2c: PATCH to the in-process console');
    push @checks, [$b, 'post-update', '/hooks/h2', 'application',
                   expected_object(json_of($body), 'application'), 'h2 in-process update'];

    # three concurrent streams on one connection
    my %ids = (proxy => uniq('h2s-proxy'), inproc => uniq('h2s-inproc'),
               key => uniq('h2s-key'));
    my %paths = ("/proxy/member/$ids{proxy}" => [$ids{proxy}, 'member'],
                 "/inproc/member/$ids{inproc}" => [$ids{inproc}, 'member'],
                 "/proxy/package_key/$ids{key}" => [$ids{key}, 'package_key']);
    my $st = nghttp_streams('et_h2', PUT => { s => 'streams' }, sort keys %paths);
    is_deeply($st, { map { ($_ => 200) } keys %paths },
              'h2c: three streams on one connection answered 200');
    for my $p (sort keys %paths) {
        my($id, $obj) = @{ $paths{$p} };
        push @checks, [$id, 'post-update', '/hooks/h2', $obj,
                       { id => $id, s => 'streams', object_type => $obj },
                       "h2 stream $p"];
    }
}

# -- a gzip-capable proxied console --------------------------------------------
{
    # The client accepts gzip and the console would use it: the event still
    # needs the plain object (the module asks the console for identity).
    my $id = uniq('gzip-console');
    my $res = request('et_json', POST => '/proxy/member',
                      json => { id => $id, text => 'zip me ' x 100 },
                      headers => { 'Accept-Encoding' => 'gzip',
                                   'X-Console-Gzip' => 1 });
    is($res->code, 201, 'gzip-capable console: create answered');
    push @checks, [$id, 'post-create', '/hooks/json', 'member',
                   expected_object(json_of($res->decoded_content(charset => 'none')),
                                   'member'),
                   'proxied console that would gzip'];
}

# -- a large answer (300 KB: many brigades, under the capture limit), chunked ---
{
    my $id = uniq('large');
    my $res = request('et_json', POST => '/proxy/member',
                      json => { id => $id, items => [map { "item $_ " . ('x' x 80) }
                                                     1 .. 3_000] },
                      headers => { 'X-Console-Chunked' => 1 });
    ok($res->code == 201 && length($res->content) > 280_000,
       'large answer: create answered ' . length($res->content) . ' bytes');
    push @checks, [$id, 'post-create', '/hooks/json', 'member',
                   expected_object($res, 'member'), 'large chunked answer'];
}

# -- mod_deflate after the capture ---------------------------------------------
{
    my $id = uniq('gz');
    my $res = request('et_json', POST => '/inproc/gz/member',
                      json => { id => $id, text => 'squeeze me ' x 200 },
                      headers => { 'Accept-Encoding' => 'gzip' });
    is($res->header('Content-Encoding'), 'gzip', 'the client got a gzipped answer');
    my $plain = Compress::Zlib::memGunzip($res->content);
    ok(defined $plain, 'the answer gunzips');
    push @checks, [$id, 'post-create', '/hooks/json', 'member',
                   expected_object(json_of($plain), 'member'), 'deflated answer'];
}

# -- Accept-Encoding in two lines: both are given back to mod_deflate -----------
{
    my $id = uniq('gz-lines');
    my $req = HTTP::Request->new(
        POST => site_url('et_json', '/inproc/gz/member'),
        ['Content-Type' => 'application/json',
         'Accept-Encoding' => 'identity;q=0.5', 'Accept-Encoding' => 'gzip'],
        JSON::PP->new->encode({ id => $id, text => 'squeeze me ' x 200 }));
    my $res = LWP::UserAgent->new(timeout => 30)->request($req);
    is($res->header('Content-Encoding'), 'gzip',
       'Accept-Encoding in two lines: the client got gzip (its second line)');
    my $plain = Compress::Zlib::memGunzip($res->content);
    push @checks, [$id, 'post-create', '/hooks/json', 'member',
                   expected_object(json_of($plain // '{}'), 'member'),
                   'deflated answer, Accept-Encoding in two lines'];
}

# -- all the calls ---------------------------------------------------------------
wait_for(sub { !grep { !calls_for_event($_->[0], $_->[1]) } @checks }, 30);
ok(marker(), 'marker call arrived');

for my $c (@checks) {
    my($id, $ev, $root, $obj, $body, $name) = @$c;
    check_call([calls_for_event($id, $ev)], name => $name, root => $root,
               object => $obj, id => $id, event => $ev, body => $body);
}

sub json_of {
    my $bytes = shift;
    return response_json(HTTP::Response->new(200, '', [], $bytes));
}

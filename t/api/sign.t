# Signatures (Standard Webhooks), checked by two verifiers that share no
# code with the module: the `standardwebhooks` package from npm
# (t/js/verify.js) and one written with Python's standard library
# (t/bin/verify_webhook.py). Every call of a signed site is verified:
#  - et_sec_signed (JSON): two EventTriggerSecret (rotation: one inline, one
#    from a file), so two signatures, each verifying with its own key, in
#    configuration order; extra headers (Authorization from a file);
#  - et_sec_signed_form (form): one secret from a file;
#  - a call retried after 503 is signed afresh: same webhook-id (the txn),
#    a new timestamp, a new signature;
#  - the signature covers the exact bytes sent (Content-Length, a console's
#    verbatim JSON with odd spacing and escapes, form bodies);
#  - tampered bodies, ids and timestamps, and the wrong key, fail.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use ETTest qw(:all);
use ETSecurity qw(:all);

plan tests => 4 + 9 + 2 + 6 + 8 + 2;

ETSecurity::setup();
my $m = materials();
start_console();
my $rcv = start_receiver(truncate => 1);

sub sigs { [split / /, $_[0]{headers}{'webhook-signature'} // ''] }
sub q_txn { my %q = parse_query($_[0]{query}); $q{txn} // '' }

# Both verifiers on every (call, secret[, body]) pair: the number of pairs
# that each verifier accepts.
sub verified {
    my($pairs) = @_;
    my $r = verify_calls($pairs);
    my %ok = map { my $v = $_; ($v => scalar grep { $_ eq 'ok' } @{ $r->{$v} }) } qw(node python);
    return (\%ok, $r);
}

# -- JSON site, two secrets ---------------------------------------------------------

my $u = uniq('sig');
my @made;
push @made, ["m-$u", request('et_sec_signed', POST => '/proxy/member',
    json => { id => "m-$u", username => "J\x{fc}rgen", tags => ['a', 'b'] })];
push @made, ["k-$u", request('et_sec_signed', PUT => "/inproc/key/k-$u",
    json => { apikey => 'x7ck', member => { username => 'dev' }, limits => [{ ceiling => 2 }] })];
push @made, ["d-$u", request('et_sec_signed', DELETE => "/proxy/member/d-$u?nobody=1")];
# the console's own bytes: spacing, escapes and number forms as it wrote them
my $raw = qq({ "id" : "r-$u",\t"name":"caf\\u00e9 \\/ tea", "n": 1.50, "e": 1E3 }\n);
push @made, ["r-$u", request('et_sec_signed', POST => '/proxy/application', content => $raw,
    headers => { 'X-Console-Raw' => 1 })];

is_deeply([map { $_->[1]->is_success ? 1 : 0 } @made], [1, 1, 1, 1],
          'json: four admin changes answered');
my @calls = map { @{ wait_calls($_->[0]) } } @made;
is(scalar @calls, 4, 'json: four calls arrived') or diag(explain \@calls);
my($rawcall) = grep { $_->{path} =~ /r-\Q$u\E$/ } @calls;
like($rawcall && $rawcall->{body}, qr/^\{ "id" : "r-\Q$u\E",\t"name":"caf\\u00e9 \\\/ tea", "n": 1\.50, "e": 1E3 ,"object_type":"application"\}$/,
     'json: the console\'s bytes went out verbatim (the signature covers those)')
    or diag($rawcall && $rawcall->{body});
is(scalar(grep { length(ETSecurity::body_bytes($_)) == ($_->{headers}{'content-length'} // -1) } @calls),
   4, 'json: each body is as long as its Content-Length');

is(scalar(grep { ($_->{headers}{'webhook-id'} // '') eq q_txn($_) } @calls), 4,
   'json: webhook-id is the txn of the query');
is(scalar(grep { my $t = $_->{headers}{'webhook-timestamp'} // '';
                 $t =~ /^\d+$/ && abs($t - $_->{time}) <= 5 } @calls), 4,
   'json: webhook-timestamp is the time of the call (Unix seconds)');
is(scalar(grep { my $s = sigs($_); @$s == 2 && !grep { !m{^v1,[A-Za-z0-9+/]{43}=$} } @$s } @calls),
   4, 'json: two signatures per call (two secrets), each v1,<base64 of 32 bytes>')
    or diag(explain [map { $_->{headers}{'webhook-signature'} } @calls]);

my($ok, $r) = verified([map { ([$_, $m->{secret1}], [$_, $m->{secret2}]) } @calls]);
is($ok->{node}, 8, 'json: standardwebhooks (npm) verifies every call with either secret')
    or diag(explain $r);
is($ok->{python}, 8, 'json: the Python verifier verifies every call with either secret')
    or diag(explain $r);

# each signature is its own key's, in configuration order
my @one;
for my $c (@calls) {
    my $s = sigs($c);
    for my $i (0, 1) {
        my %h = (%{ $c->{headers} }, 'webhook-signature' => $s->[$i]);
        my $only = { %$c, headers => \%h };
        push @one, [$only, $m->{secret1}], [$only, $m->{secret2}];
    }
}
($ok, $r) = verified(\@one);
my @want = map { ('ok', 'fail', 'fail', 'ok') } @calls;
is_deeply([map { /^ok/ ? 'ok' : 'fail' } @{ $r->{node} }], \@want,
          'rotation: the first signature verifies with the first secret only, the second with the second (npm)');
is_deeply([map { /^ok/ ? 'ok' : 'fail' } @{ $r->{python} }], \@want,
          'rotation: the same with the Python verifier');

is(scalar(grep { ($_->{headers}{authorization} // '') eq
                 do { my $b = ETSecurity::read_file(sec_file('bearer.txt')); $b =~ s/\s+\z//; $b } } @calls),
   4, 'EventTriggerHeader Authorization file:...: the first line of the file, on every call');
is(scalar(grep { ($_->{headers}{'x-tenant'} // '') eq 'acme corp' } @calls), 4,
   'EventTriggerHeader X-Tenant "acme corp": on every call');

# -- negative controls: the verifiers are not fooled ----------------------------------

SKIP: {
    my $c = $calls[0];
    skip 'no call arrived to tamper with', 2 unless $c;
    my $b = ETSecurity::body_bytes($c);
    my $flip = $b;
    substr($flip, 2, 1) = substr($flip, 2, 1) eq 'x' ? 'y' : 'x';
    my %h_id = (%{ $c->{headers} }, 'webhook-id' => '0' x 32);
    my %h_ts = (%{ $c->{headers} }, 'webhook-timestamp' => $c->{headers}{'webhook-timestamp'} + 1);
    my @neg = (
        [$c, $m->{secret1}, $b . ' '],                     # one byte more
        [$c, $m->{secret1}, $flip],                        # one byte changed
        [{ %$c, headers => \%h_id }, $m->{secret1}],       # another txn
        [{ %$c, headers => \%h_ts }, $m->{secret1}],       # another timestamp
        [$c, $m->{secret3}],                               # a key it was not signed with
    );
    ($ok, $r) = verified(\@neg);
    is($ok->{node}, 0, 'tampered body, id, timestamp or wrong key: npm refuses all five')
        or diag(explain $r);
    is($ok->{python}, 0, 'the same: the Python verifier refuses all five')
        or diag(explain $r);
}

# -- form site, one secret from a file -------------------------------------------------

{
    my $id = "f-$u";
    my $obj = { id => $id, name => "a b&c=d/\x{e9}", member => { username => 'dev' },
                limits => [{ period => 'second', ceiling => 2 }], ok => JSON::PP::true };
    my $res = request('et_sec_signed_form', POST => '/inproc/key', json => $obj);
    my $fc = wait_calls($id);
    check_call($fc, name => 'form: the call', root => '/hooks/signed-form', object => 'key',
               id => $id, event => 'post-create', format => 'form',
               body => expected_object($obj, 'key'));
    my $c = $fc->[0] || { headers => {}, body => '', query => '' };
    is(scalar @{ sigs($c) }, 1, 'form: one secret, one signature');
    is(length(ETSecurity::body_bytes($c)), $c->{headers}{'content-length'},
       'form: the body is as long as its Content-Length');
    ($ok, $r) = verified([[$c, $m->{secret3}], [$c, $m->{secret1}]]);
    is_deeply($r->{node}[0], 'ok', 'form: standardwebhooks (npm) verifies the form body')
        or diag(explain $r);
    is_deeply($r->{python}[0], 'ok', 'form: the Python verifier verifies it')
        or diag(explain $r);
    ok($r->{node}[1] ne 'ok' && $r->{python}[1] ne 'ok',
       'form: and neither with another site\'s secret');
}

# -- a retried call is signed afresh ----------------------------------------------------

{
    stop_proc($rcv);
    $rcv = start_receiver(status => 503);
    my $id = "retry-$u";
    my $res = request('et_sec_signed', POST => '/proxy/key', json => { id => $id });
    is($res->code, 201, 'retry: create answered');
    my $first = wait_calls($id, n => 2, timeout => 20);
    stop_proc($rcv);
    $rcv = start_receiver(status => 200);
    my $row;
    wait_for(sub { $row = outbox("SELECT state, attempts FROM et_event WHERE oid = "
                                 . sql_quote($id))->[0]; $row && $row->{state} == 1 }, 20);
    my @rc = calls_for_id($id);
    cmp_ok(scalar @rc, '>=', 3, 'retry: two refused attempts, then delivered')
        or diag(explain [$row, \@rc]);
    my %ids = map { ($_->{headers}{'webhook-id'} // '') => 1 } @rc;
    is_deeply([keys %ids], [@rc ? q_txn($rc[0]) : 'no call'],
              'retry: every attempt has the same webhook-id, the txn');
    my @ts = map { $_->{headers}{'webhook-timestamp'} } @rc;
    ok(!grep({ $ts[$_] <= $ts[$_ - 1] } 1 .. $#ts),
       'retry: each attempt has a later webhook-timestamp (1.5s apart)') or diag("@ts");
    my %sig = map { ($_->{headers}{'webhook-signature'} => 1) } @rc;
    is(scalar keys %sig, scalar @rc, 'retry: each attempt has its own signature');
    is(scalar(grep { $_->{body} eq $rc[0]{body} } @rc), scalar @rc,
       'retry: the same body on every attempt');
    ($ok, $r) = verified([map { ([$_, $m->{secret1}], [$_, $m->{secret2}]) } @rc]);
    is($ok->{node}, 2 * @rc, 'retry: npm verifies every attempt with either secret') or diag(explain $r);
    is($ok->{python}, 2 * @rc, 'retry: Python verifies every attempt with either secret') or diag(explain $r);
}

# -- every call of the signed sites, once more -------------------------------------------

{
    my @all = grep { $_->{path} =~ m{^/hooks/signed(?:-form)?/} } calls();
    my @pairs = map { $_->{path} =~ m{^/hooks/signed-form/} ? [$_, $m->{secret3}]
                                                             : ([$_, $m->{secret1}], [$_, $m->{secret2}]) } @all;
    ($ok, $r) = verified(\@pairs);
    is($ok->{node}, scalar @pairs, "all " . scalar(@all) . " calls of the signed sites verify (npm)")
        or diag(explain $r);
    is($ok->{python}, scalar @pairs, 'and with the Python verifier') or diag(explain $r);
}

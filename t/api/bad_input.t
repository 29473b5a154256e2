# Bad input from the console, beyond t/api/bad_body.t: NUL bytes (raw, after
# a number or a literal, escaped), invalid UTF-8 (overlong, lone
# continuation, encoded surrogate, truncated, in a key, in the id), ids that
# are missing, an array, a real, out of range or given twice, a BOM, a
# console that closes its answer early (Content-Length longer than what it
# sent, a chunked answer cut off), answers over EventTriggerCaptureLimit
# (64K on et_sec_bad; 10 MB chunked against the default 1M) and nesting
# deeper than EventTriggerMaxDepth (8 on et_sec_bad; the object itself is
# level 1) or than jansson's own limit. For each: one failed event with the reason, exactly one log line
# (ET00034) naming its txn, no call, and httpd keeps serving. At the limits
# (depth 8, 64K) the answer is still an event that is delivered.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use ETTest qw(:all);
use ETSecurity qw(:all);

my $u = uniq('badin');
my $raw = { 'X-Console-Raw' => 1 };
sub nest { my($n, $leaf) = @_; ('{"a":' x ($n - 1)) . ($leaf // '1') . ('}' x ($n - 1)) }

my @cases = (
    # [name, site, method, path, body, headers, error regex, client check]
    ['a raw NUL in a string', 'et_json', POST => '/proxy/member', qq({"id":"n1-$u","x":"a\0b"}), $raw, qr/NUL|malformed/],
    ['a NUL after a number', 'et_json', POST => '/proxy/member', qq({"id":"n2-$u","n":12\0}), $raw, qr/NUL character at byte \d+/],
    ['a NUL after a literal', 'et_sec_bad', PUT => "/proxy/key/n3-$u", qq({"id":"n3-$u","t":true\0,"f":null\0}), $raw, qr/NUL character/],
    ['a NUL after the object', 'et_json', POST => '/proxy/member', qq({"id":"n4-$u"}\0), $raw, qr/NUL character/],
    ['an escaped NUL (\u0000)', 'et_json', POST => '/proxy/application', qq({"id":"n5-$u","x":"a\\u0000b"}), $raw, qr/NUL character/],
    ['an escaped NUL in a key', 'et_json', POST => '/proxy/application', qq({"id":"n6-$u","a\\u0000":1}), $raw, qr/NUL character/],
    ['overlong UTF-8', 'et_json', POST => '/proxy/member', qq({"id":"u1-$u","x":"\xc0\xaf"}), $raw, qr/invalid UTF-8/],
    ['a lone continuation byte', 'et_json', POST => '/proxy/member', qq({"id":"u2-$u","x":"\x80"}), $raw, qr/invalid UTF-8/],
    ['an encoded surrogate', 'et_json', POST => '/proxy/member', qq({"id":"u3-$u","x":"\xed\xa0\x80"}), $raw, qr/invalid UTF-8/],
    ['a truncated sequence', 'et_json', POST => '/proxy/member', qq({"id":"u4-$u","x":"\xe2\x82"}), $raw, qr/invalid UTF-8/],
    ['invalid UTF-8 in a key', 'et_json', POST => '/proxy/member', qq({"id":"u5-$u","\xff":1}), $raw, qr/invalid UTF-8/],
    ['invalid UTF-8 in the id', 'et_json', POST => '/proxy/member', qq({"id":"u6-\xfe$u"}), $raw, qr/invalid UTF-8/],
    ['an escaped lone surrogate', 'et_json', POST => '/proxy/member', qq({"id":"u7-$u","x":"\\ud800"}), $raw, qr/malformed JSON/],
    ['a byte-order mark', 'et_json', POST => '/proxy/member', qq(\xef\xbb\xbf{"id":"b1-$u"}), $raw, qr/malformed JSON/],
    ['no id field (EventTriggerIdField apikey)', 'et_json', POST => '/proxy/apikey/key', qq({"id":"i1-$u"}), $raw, qr/no 'apikey' field/],
    ['an empty object', 'et_json', POST => '/proxy/member', '{}', $raw, qr/no 'id' field/],
    ['an array as id', 'et_json', POST => '/proxy/member', qq({"id":["i2-$u"]}), $raw, qr/'id' is a JSON array/],
    ['a real as id', 'et_json', POST => '/proxy/member', '{"id":1.5}', $raw, qr/'id' is a JSON real number/],
    ['an id beyond 64 bits', 'et_json', POST => '/proxy/member', '{"id":18446744073709551616}', $raw, qr/number out of range/],
    ['the id twice', 'et_json', POST => '/proxy/member', qq({"id":"i3-$u","id":"i4-$u"}), $raw, qr/duplicate key/],
    ['an object as id', 'et_sec_bad', POST => '/proxy/member', qq({"id":{"id":"i5-$u"}}), $raw, qr/'id' is a JSON object/],
    ['whitespace only', 'et_json', POST => '/proxy/member', "  \r\n\t ", $raw, qr/malformed JSON/],
    ['an HTML page', 'et_json', POST => '/proxy/member', "<html><body>saved i6-$u</body></html>", $raw, qr/malformed JSON/],
    ['closed early (Content-Length 1000, 30 bytes sent)', 'et_sec_bad', POST => '/raw/member',
     qq({"id":"c1-$u"}), { 'X-Raw-Declare' => 1000 }, qr/incomplete/, 'cut'],
    ['closed early (chunked, no last chunk)', 'et_sec_bad', POST => '/raw/member',
     qq({"id":"c2-$u"}), { 'X-Raw-Chunked' => 'cut' }, qr/incomplete/, 'cut'],
    ['over EventTriggerCaptureLimit 64K', 'et_sec_bad', POST => '/proxy/member',
     qq({"id":"h1-$u","pad":") . ('x' x (64 * 1024)) . '"}', $raw, qr/exceeds EventTriggerCaptureLimit 65536/],
    ['10 MB, chunked, over the default 1M', 'et_json', POST => '/proxy/member',
     qq({"id":"h2-$u","pad":[) . join(',', ('"0123456789abcdef0123456789abcdef"') x 300_000) . ']}',
     { %$raw, 'X-Console-Chunked' => 1 }, qr/exceeds EventTriggerCaptureLimit 1048576/],
    ['nesting 9 > EventTriggerMaxDepth 8', 'et_sec_bad', POST => '/proxy/member',
     '{"id":"d1-' . $u . '","a":' . nest(9) . '}', $raw, qr/nesting deeper than 8/],
    ['nesting 100000 (beyond jansson\'s own limit)', 'et_json', POST => '/proxy/member',
     qq({"id":"d2-$u","a":) . ('[' x 100_000) . (']' x 100_000) . '}', $raw, qr/nesting deeper than 32/],
);

plan tests => @cases * 3 + 4;

ETSecurity::setup();
start_console();
start_raw_console();
start_receiver(truncate => 1);

my $last_row = outbox('SELECT max(id) AS m FROM et_event')->[0]{m} // 0;
my $log_mark = error_log_size();

for my $c (@cases) {
    my($name, $site, $method, $path, $body, $headers, $err, $client) = @$c;
    my $res = request($site, $method => $path, content => $body, headers => $headers);
    if (($client // '') eq 'cut') {
        ok($res->code =~ /^(2|5)/ && length($res->content) < 1000,
           "$name: the client got the broken answer (" . $res->code . ')');
    }
    else {
        ok($res->is_success && $res->content eq $body, "$name: the client got the answer unchanged")
            or diag($res->code . ' ' . substr($res->content, 0, 200));
    }
    my $rows = [];
    wait_for(sub { $rows = outbox("SELECT id, txn, state, attempts, error FROM et_event "
                                  . "WHERE id > $last_row ORDER BY id"); @$rows }, 10);
    $last_row = $rows->[-1]{id} if @$rows;
    my $row = $rows->[0] || {};
    ok(@$rows == 1 && $row->{state} == 3 && $row->{attempts} == 0
       && ($row->{error} // '') =~ $err, "$name: one failed event, $err")
        or diag(explain $rows);
    my $txn = $row->{txn} // 'none';
    my @lines = grep { /\Q$txn\E/ } split /\n/, error_log_since($log_mark);
    ok(@lines == 1 && $lines[0] =~ /ET00034: \w+ post-\w+ not sent: .*\(txn=\Q$txn\E, recorded as failed\)/
       && $lines[0] !~ /[\x00-\x08\x0b-\x1f\x7f-\xff]/,
       "$name: one log line (ET00034) with the txn, printable")
        or diag(explain \@lines);
}

# At the limits the answer is an event, and it is delivered.
my @ok = (
    ['depth 8', '/proxy/member', '{"id":"ok1-' . $u . '","a":' . nest(8) . '}'],
    ['64K minus a little', '/proxy/member', qq({"id":"ok2-$u","pad":") . ('y' x (64 * 1024 - 60)) . '"}'],
);
for my $o (@ok) {
    my($name, $path, $body) = @$o;
    my($id) = $body =~ /"id":"([^"]+)"/;
    request('et_sec_bad', POST => $path, content => $body, headers => $raw);
    is(scalar @{ wait_calls($id) }, 1, "at the limit ($name): delivered");
}

ok(marker(), 'httpd still serves and sends (marker call arrived)');
my @others = grep { $_->{path} !~ m{/(?:marker|ok\d)-} } calls();
is(scalar @others, 0, 'no call for any of the bad answers')
    or diag(explain [map { "$_->{method} $_->{path}" } @others]);

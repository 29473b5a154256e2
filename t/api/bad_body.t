# Answers the module cannot make an event of (malformed JSON, a JSON array
# or string, no usable id, not UTF-8, too deep, over
# EventTriggerCaptureLimit): the client gets the console's answer unchanged,
# no call is made, a failed event (state 3) with a reason is recorded in the
# outbox, the status page counts it, and httpd goes on serving.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use ETTest qw(:all);

my $u = uniq('bad');
my @cases = (
    # [name, site, method, path, raw body]
    ['malformed JSON', 'et_json', POST => '/proxy/member', qq({"id": "m-$u", )],
    ['a JSON array', 'et_json', PUT => "/inproc/member/a-$u", qq([{"id":"a-$u"}])],
    ['a JSON string', 'et_form', PATCH => "/proxy/key/s-$u", qq("s-$u")],
    ['a JSON number', 'et_json', PUT => "/inproc/key/n-$u", '42'],
    ['trailing garbage', 'et_json', POST => '/inproc/application',
     qq({"id":"t-$u"} and more)],
    ['no id field', 'et_json', POST => '/inproc/application', qq({"name":"noid-$u"})],
    ['a null id (a create, no Location)', 'et_json', POST => '/proxy/member', qq({"id":null})],
    ['an object as id', 'et_json', POST => '/proxy/member', qq({"id":{"v":"o-$u"}})],
    ['a boolean id', 'et_form', POST => '/inproc/member', qq({"id":true})],
    ['an empty id', 'et_json', POST => '/proxy/package_key', qq({"id":""})],
    ['not UTF-8', 'et_json', POST => '/proxy/member', qq({"id":"u-$u","n":"\xff\xfe"})],
    ['an id of 100000 characters', 'et_json', POST => '/inproc/member',
     '{"id":"' . ('i' x 100_000) . '"}'],
    ['too deep', 'et_json', POST => '/inproc/member',
     qq({"id":"d-$u","a":) . ('[' x 5000) . (']' x 5000) . '}'],
    ['over EventTriggerCaptureLimit (1 MiB)', 'et_json', POST => '/proxy/member',
     qq({"id":"big-$u","pad":") . ('x' x (1024 * 1024 + 10)) . '"}'],
);

plan tests => @cases * 2 + 2 + 4;

start_console();
start_receiver(truncate => 1);

my $before = status_json();
my $last_row = outbox('SELECT max(id) AS m FROM et_event')->[0]{m} // 0;

for my $c (@cases) {
    my($name, $site, $method, $path, $raw) = @$c;
    my $res = request($site, $method => $path, content => $raw,
                      headers => { 'X-Console-Raw' => 1 });
    ok($res->is_success && $res->content eq $raw,
       "$name: the client got the console's answer unchanged")
        or diag(substr($res->as_string, 0, 500));

    # the event is written before the answer completes: it is there now
    my $rows = outbox("SELECT id, state, attempts, oid, error FROM et_event "
                      . "WHERE id > $last_row ORDER BY id");
    $last_row = $rows->[-1]{id} if @$rows;
    my $row = $rows->[0];
    ok(@$rows == 1 && $row->{state} == 3 && length($row->{error} // '') > 5
       && $row->{attempts} == 0,
       "$name: one failed event with a reason in the outbox")
        or diag(explain $rows);
    note("$name: $row->{error}") if $row && $row->{error};
}

# A console that gzips whatever the client accepts: the module cannot read
# the object (content-encoded), records why, passes the answer on.
{
    my $id = "gz-$u";
    my $res = request('et_json', POST => '/proxy/member', json => { id => $id },
                      headers => { 'X-Console-Gzip' => 'force' });
    ok($res->code == 201 && ($res->header('Content-Encoding') // '') eq 'gzip'
       && ($res->decoded_content // '') =~ /\Q$id\E/,
       'forced gzip: the client got the gzipped answer');
    my $rows = outbox("SELECT id, state, attempts, oid, error FROM et_event "
                      . "WHERE id > $last_row ORDER BY id");
    $last_row = $rows->[-1]{id} if @$rows;
    ok(@$rows == 1 && $rows->[0]{state} == 3 && ($rows->[0]{error} // '') =~ /encod/,
       'forced gzip: a failed event that says the answer was content-encoded')
        or diag(explain $rows);
}

ok(marker(), 'httpd still serves and sends (marker call arrived)');

my @others = grep { $_->{path} !~ m{/marker-} } calls();
is(scalar @others, 0, 'no call for any of the bad answers')
    or diag(explain [map { "$_->{method} $_->{path}?$_->{query}" } @others]);

my $after = status_json();
ok($before && $after, 'the status page answers JSON') or diag(explain $after);
is(($after->{failed} // 0) - ($before->{failed} // 0), @cases + 1,
   'the status page counts the failed events');

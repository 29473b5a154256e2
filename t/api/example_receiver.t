# The example receiver for customers (examples/receiver.py) works as a
# site's endpoint (t/conf/x_example.conf.in: sites et_example, JSON, and
# et_example_form, form bodies; both signed):
#  - a create, an update and a delete made through httpd are applied to the
#    receiver's SQLite table (the object appears, changes, disappears);
#  - a form body is decoded into nested objects and lists;
#  - calls with a wrong, missing or stale signature get 401 and change
#    nothing;
#  - a repeated txn (ours, or one the module sent) is answered 200 and not
#    applied again;
#  - before-save events (a guarded location): a member of a refused domain
#    gets the receiver's 422 and is not saved; another is enriched with the
#    receiver's --enrich field, which the console saves and the after-save
#    call carries.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use ETTest qw(:all);
use JSON::PP ();
use LWP::UserAgent ();
use HTTP::Request ();
use Digest::SHA qw(hmac_sha256);
use MIME::Base64 qw(encode_base64 decode_base64);

plan tests => 17 + 6;

my $SECRET = 'whsec_ZXhhbXBsZS1yZWNlaXZlci10ZXN0LXNlY3JldC0zMmI=';
my $JSON = JSON::PP->new->utf8->canonical;

# The Define of t/conf/x_example.conf (ETTest::define reads extra.conf only).
sub xdefine {
    my $name = shift;
    my $file = t_path('t_conf', 'x_example.conf');
    open my $fh, '<', $file or die "open $file: $!";
    while (<$fh>) {
        return $1 if /^\s*Define\s+\Q$name\E\s+(\S+)/;
    }
    die "no Define $name in $file";
}

my $port = xdefine('ET_EXAMPLE_RECEIVER_PORT');
my $db = t_path('t_state', 'example-receiver.db');
unlink $db, "$db-wal", "$db-shm";
my $pid = ETTest::spawn(name => 'example receiver', port => $port,
    out => t_path('t_logs', 'example_receiver.out'),
    argv => [ETTest::python(), t_path('t_dir', '..', 'examples', 'receiver.py'),
             '--port', $port, '--db', $db, '--prefix', '/hooks/example',
             '--secret', $SECRET, '--refuse-domain', 'blocked.example',
             '--enrich', 'crm_id=C-1001']);

# One value of the receiver's database (sqlite3 CLI), '' if none.
sub sql1 {
    my $sql = shift;
    open my $fh, '-|', 'sqlite3', '-cmd', '.timeout 5000', $db, $sql
        or die "sqlite3: $!";
    my $out = do { local $/; <$fh> } // "";
    close $fh;
    $out =~ s/\n\z//;
    return $out;
}
sub sq { my $s = shift; $s =~ s/'/''/g; "'$s'" }
sub stored {
    my($object, $id) = @_;
    my $body = sql1("SELECT body FROM objects WHERE object = " . sq($object)
                    . " AND id = " . sq($id));
    return length $body ? $JSON->decode($body) : undef;
}

# -- create, update, delete through httpd ------------------------------------

my $id = uniq('exr');
my $res = request('et_example', POST => '/inproc/member',
                  json => { id => $id, username => 'alice', tags => ['a'] });
is($res->code, 201, 'create answered by the console');
my $obj = wait_for(sub { stored(member => $id) }, 20);
is_deeply($obj, { id => $id, username => 'alice', tags => ['a'], object_type => 'member' },
          'create: the object is in the receiver\'s table');

$res = request('et_example', PUT => "/inproc/member/$id",
               json => { username => 'bob' });
is($res->code, 200, 'update answered by the console');
$obj = wait_for(sub { my $o = stored(member => $id); $o && $o->{username} eq 'bob' && $o }, 20);
is_deeply($obj, { id => $id, username => 'bob', object_type => 'member' },
          'update: the object was replaced');

$res = request('et_example', DELETE => "/inproc/member/$id");
is($res->code, 200, 'delete answered by the console');
ok(wait_for(sub { !defined stored(member => $id) }, 20), 'delete: the object is gone');

is(sql1("SELECT group_concat(event, ' ') FROM (SELECT event FROM seen_txn WHERE id = "
        . sq($id) . " ORDER BY received)"),
   'post-create post-update post-delete', 'three txns recorded, in order');

# -- a form body --------------------------------------------------------------

my $kid = uniq('exrk');
$res = request('et_example_form', POST => '/inproc/key',
               json => { id => $kid, member => { username => 'dev 1' },
                         limits => [{ period => 'second', ceiling => 2 },
                                    { period => 'day', ceiling => 5000 }],
                         phone => undef });
is($res->code, 201, 'form site: create answered');
$obj = wait_for(sub { stored(key => $kid) }, 20);
is_deeply($obj, { id => $kid, member => { username => 'dev 1' },
                  limits => [{ period => 'second', ceiling => '2' },
                             { period => 'day', ceiling => '5000' }],
                  phone => '', object_type => 'key' },
          'form site: bracket notation decoded into objects and lists');

# -- calls sent by hand: signatures and repeats ------------------------------

my $ua = LWP::UserAgent->new(timeout => 10, keep_alive => 0);
sub sign {
    my($key, $txn, $ts, $body) = @_;
    return 'v1,' . encode_base64(hmac_sha256("$txn.$ts.$body", $key), '');
}
my $KEY = decode_base64(substr $SECRET, 6);
# call(id, txn, body, signature => ..., ts => ...) -> HTTP::Response
sub call {
    my($cid, $txn, $body, %a) = @_;
    my $ts = $a{ts} // time;
    my @h = ('Content-Type' => 'application/json');
    push @h, 'webhook-id' => $txn, 'webhook-timestamp' => $ts,
             'webhook-signature' => $a{signature} // sign($KEY, $txn, $ts, $body)
        unless $a{unsigned};
    my $req = HTTP::Request->new(PUT =>
        "http://127.0.0.1:$port/hooks/example/v1/member/$cid?event=post-create&txn=$txn",
        \@h, $body);
    return $ua->request($req);
}
sub txn { join '', map { sprintf '%02x', int rand 256 } 1 .. 16 }

my $hid = uniq('exrh');
my $body = qq({"id":"$hid","v":1,"object_type":"member"});
my $wrong = sign('another key entirely, 32 bytes!!', my $t1 = txn(), time, $body);
is(call($hid, $t1, $body, signature => $wrong)->code, 401, 'wrong signature: 401');
is(call($hid, txn(), $body, unsigned => 1)->code, 401, 'no signature: 401');
is(call($hid, txn(), $body, ts => time - 600)->code, 401, 'timestamp 10 minutes old: 401');
ok(!defined stored(member => $hid), 'refused calls changed nothing');

my $t2 = txn();
$res = call($hid, $t2, $body);
is($res->code . ' ' . $res->content, '200 {"ok":true}', 'a good call: 200 {"ok":true}');
my $again = qq({"id":"$hid","v":2,"object_type":"member"});
is(call($hid, $t2, $again)->code, 200, 'the same txn again: 200');
is(stored(member => $hid)->{v}, 1, 'the repeated txn was not applied again');

# the module's own create of $id, sent again after the delete: not re-created
my $create_txn = sql1("SELECT txn FROM seen_txn WHERE id = " . sq($id)
                      . " AND event = 'post-create'");
$res = call($id, $create_txn, qq({"id":"$id","object_type":"member"}));
ok($res->code == 200 && !defined stored(member => $id),
   'a repeat of a delivered create (after its delete) is not applied');

# -- before-save events, answered by the receiver's decide() ---------------
my $bad = uniq('exblocked');
$res = request('et_example', POST => '/inproc/guarded/member',
               json => { id => $bad, email => 'x@Blocked.Example' });
is($res->code, 422, 'before-save: a refused domain gets the receiver\'s 422');
like($res->content, qr/members from blocked\.example are not allowed/,
     'with its message');
my $good = uniq('exenriched');
$res = request('et_example', POST => '/inproc/guarded/member',
               json => { id => $good, email => 'y@ok.example' });
my $saved = response_json($res) // {};
is($res->code, 201, 'before-save: another member is saved');
is($saved->{crm_id}, 'C-1001', 'with the receiver\'s enrichment');
ok(wait_for(sub { my $o = stored(member => $good); $o && ($o->{crm_id} // '') eq 'C-1001' }, 20),
   'the after-save call brought the enriched object to the receiver');
ok(!defined stored(member => $bad), 'the refused member never reached it');

stop_proc($pid);

# Ids: whatever an id holds ('/', '?', '%', '#', space, '+', UTF-8, "." and
# "..") it arrives intact as ONE percent-encoded path segment; a 204 DELETE
# takes the id from the request path; EventTriggerIdField picks another
# field; a JSON number is an id too.
use strict;
use warnings FATAL => 'all';
use utf8;

use Apache::Test qw(-withtestmore);
use URI::Escape qw(uri_escape_utf8);
use ETTest qw(:all);

start_console();
start_receiver(truncate => 1);

my %root = (et_json => '/hooks/json', et_form => '/hooks/form');
my %format = (et_json => 'json', et_form => 'form');

my @odd = ('a/b', 'a?b=c&d', '100%', '%41', 'a b', 'a+b', 'a#b',
           "\x{fc}ber-\x{20ac}-\x{65e5}\x{672c}", '..', '.', "q\"u'o;t,e=s",
           ' lead and trail ', 'x/../y', 'ü/ö?ä#ß %20');
# ids that a request path can carry (no '/': AllowEncodedSlashes is off)
my @in_path = grep { !m{/} } @odd;

# Each case: [name, site, method, path, json, expected id, event, object,
#             expected body (undef: the console's answer + object_type)]
# Ids in bodies are used exactly (the outbox is fresh and the receiver's log
# truncated for each run); each site and console has an object of its own so
# that equal ids do not meet.
my @cases;
my %obj_of = ('et_json proxy' => 'member', 'et_json inproc' => 'application',
              'et_form proxy' => 'key', 'et_form inproc' => 'package_key');
for my $id (@odd) {
    for my $site (qw(et_json et_form)) {
        for my $console (qw(proxy inproc)) {
            my $obj = $obj_of{"$site $console"};
            push @cases, ["create, id '$id' in the body ($site, $console)", $site,
                          POST => "/$console/$obj", { id => $id, n => 1 },
                          $id, 'post-create', $obj];
        }
    }
}
for my $id (@in_path) {
    my($full, $enc);
    for my $console (qw(proxy inproc)) {
        $full = "$id~" . uniq('path');
        $enc = uri_escape_utf8($full);
        push @cases, ["update, id '$id' from the path via the console ($console)",
                      'et_json', PUT => "/$console/application/$enc", { x => 1 },
                      $full, 'post-update', 'application'];
        push @cases, ["204 delete, id '$id' from the path ($console)",
                      'et_json', DELETE => "/$console/key/$enc?nobody=1", undef,
                      $full, 'post-delete', 'key',
                      { id => $full, object_type => 'key' }];
    }
    $full = "$id~" . uniq('path');
    $enc = uri_escape_utf8($full);
    push @cases, ["204 delete, id '$id' from the path (form)",
                  'et_form', DELETE => "/inproc/package_key/$enc?nobody=1", undef,
                  $full, 'post-delete', 'package_key',
                  { id => $full, object_type => 'package_key' }];
}
for my $console (qw(proxy inproc)) {
    my $ak = uniq('AK/x y');
    push @cases, ["EventTriggerIdField apikey, create ($console)", 'et_json',
                  POST => "/$console/apikey/key", { id => uniq('kid'), apikey => $ak },
                  $ak, 'post-create', 'key'];
    $ak = uniq('AK');
    push @cases, ["EventTriggerIdField apikey, update ($console)", 'et_form',
                  PATCH => "/$console/apikey/key/" . uniq('other'), { apikey => $ak },
                  $ak, 'post-update', 'key'];
    my $p = uniq('AK-path');
    push @cases, ["EventTriggerIdField apikey, 204 delete from the path ($console)",
                  'et_json', DELETE => "/$console/apikey/key/$p?nobody=1", undef,
                  $p, 'post-delete', 'key', { apikey => $p, object_type => 'key' }];
    # (the object made up for a bodiless answer names its id by
    # EventTriggerIdField: {"apikey": ..., "object_type": "key"})
}
{
    my $num = 1_000_000_000 + int(rand(1_000_000_000));
    push @cases, ['a JSON number as the id', 'et_json', POST => '/inproc/member',
                  { id => $num, n => 'number' }, "$num", 'post-create', 'member'];
}

plan tests => @cases * 2 + 1;
binmode $_, ':encoding(UTF-8)' for \*STDOUT, \*STDERR;

for my $c (@cases) {
    my($name, $site, $method, $path, $json) = @$c;
    my $res = request($site, $method => $path, defined $json ? (json => $json) : ());
    ok($res->is_success, "$name: the console answered") or diag($res->as_string);
    $c->[8] //= expected_object($res, $c->[7]);
}

# The calls for a case: its id and event, on its site and object.
sub calls_of {
    my $c = shift;
    my $prefix = "$root{$c->[1]}/v1/$c->[7]/";
    return grep { index($_->{path}, $prefix) == 0 } calls_for_event($c->[5], $c->[6]);
}

wait_for(sub { !grep { !calls_of($_) } @cases }, 30);
ok(marker(), 'marker call arrived');

for my $c (@cases) {
    my($name, $site, $method, $path, $json, $id, $event, $object, $body) = @$c;
    check_call([calls_of($c)], name => $name, root => $root{$site},
               object => $object, id => $id, event => $event,
               format => $format{$site}, body => $body);
}

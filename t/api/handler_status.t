# A handler that returns its status ("return HTTP_NO_CONTENT;") instead of
# setting r->status and returning OK: httpd answers through ap_die() and
# ap_send_error_response(), which drops the resource filters. A 2xx answered
# that way is still a saved change and must make its call (the id from the
# path, or a create's Location); an error answered that way must not.
# t/c-modules/et_console answers X-Console-Return: NNN that way.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use ETTest qw(:all);

start_console();
start_receiver(truncate => 1);

# [name, site, format, root, object, method, path ({id}), status, event]
my @made = (
    ['DELETE returns 204', 'et_json', 'json', '/hooks/json', 'member',
     DELETE => '/inproc/member/{id}', 204, 'post-delete'],
    ['PUT returns 204 (form site)', 'et_form', 'form', '/hooks/form', 'key',
     PUT => '/inproc/key/{id}', 204, 'post-update'],
    ['POST returns 201 with a Location', 'et_json', 'json', '/hooks/json',
     'application', POST => '/inproc/application', 201, 'post-create'],
    # httpd keeps the Location of a 201 only: the module reads it first
    ['POST returns 202 with a Location', 'et_json', 'json', '/hooks/json',
     'member', POST => '/inproc/member', 202, 'post-create'],
);
my @refused = (
    ['DELETE returns 409', 'et_json', DELETE => '/inproc/member/{id}', 409],
    ['PUT returns 500', 'et_form', PUT => '/inproc/package_key/{id}', 500],
);

plan tests => @made * 2 + @refused * 2 + 1;

# The request of a case: the handler returns $status; the id it used.
sub returned {
    my($tag, $site, $method, $path, $status, $name) = @_;
    my $id = uniq($tag);
    (my $p = $path) =~ s/\{id\}/$id/;
    my $res = request($site, $method => $p,
                      $method eq 'DELETE' ? () : (json => { id => $id }),
                      headers => { 'X-Console-Return' => $status });
    is($res->code, $status, "$name: the client got $status")
        or diag($res->as_string);
    return $id;
}

my @cases;
for my $m (@made) {
    my($name, $site, $format, $root, $object, $method, $path, $status, $event) = @$m;
    my $id = returned('ret', $site, $method, $path, $status, $name);
    push @cases, [$name, $id, $format, $root, $object, $event];
}
my @gone;
for my $r (@refused) {
    my($name, $site, $method, $path, $status) = @$r;
    push @gone, [$name, returned('ret-err', $site, $method, $path, $status, $name)];
}

wait_for(sub { !grep { !calls_for_id($_->[1]) } @cases }, 30);
ok(marker(), 'marker call arrived');

for my $c (@cases) {
    my($name, $id, $format, $root, $object, $event) = @$c;
    # no body from the console: the object is its id (and object_type)
    check_call([calls_for_event($id, $event)], name => "$name: its call",
               root => $root, object => $object, id => $id, event => $event,
               format => $format, body => { id => $id, object_type => $object });
}
for my $g (@gone) {
    my($name, $id) = @$g;
    my @c = calls_for_id($id);
    is(scalar @c, 0, "$name: no call (the marker made later has arrived)");
}

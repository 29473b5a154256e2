# The status page (SetHandler eventtrigger-status): HTML for people, JSON
# (?json) with at least pending, delivered, dead and failed, which follow
# the outbox.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use ETTest qw(:all);

plan tests => 7;

start_console();
start_receiver(truncate => 1);

my $res = request('main', GET => '/et-status');
is($res->code, 200, 'the status page answers');
like($res->header('Content-Type') // '', qr{^text/html}, 'in HTML');

my $before = status_json();
ok(ref $before eq 'HASH', '?json answers a JSON object') or diag(explain $before);
is_deeply([grep { !(defined $before->{$_} && $before->{$_} =~ /^\d+\z/) }
           qw(pending delivered dead failed)], [],
          'with pending, delivered, dead and failed counts')
    or diag(explain $before);

$res = request('et_json', GET => '/et-status?json');
is_deeply([map { defined response_json($res) ? 1 : 0 } 1], [1],
          'the page works on a virtual host too');

ok(marker(), 'an event was delivered');
my $after;
wait_for(sub { $after = status_json();
               $after && ($after->{delivered} // 0) > ($before->{delivered} // 0) }, 10);
cmp_ok(($after->{delivered} // 0) - ($before->{delivered} // 0), '>=', 1,
       'the delivered count went up') or diag(explain [$before, $after]);

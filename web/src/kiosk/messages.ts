// The kiosk's words: every one in Chinese first, with its English beneath
// (a lobby's kiosk serves both at once; there is no language switch).
export const km = {
  'title': ['自助打印', 'Self-service printing'],
  'setup.title': ['设置自助打印机', 'Set up this kiosk'],
  'setup.token': ['请输入本机的访问令牌（由管理员提供）', 'The kiosk\'s API token (from the administrator)'],
  'setup.save': ['保存', 'Save'],
  'setup.bad': ['令牌无效或不是自助打印机令牌', 'The token is not valid, or not a kiosk\'s'],
  'home.scan': ['扫描报告上的二维码', 'Scan the QR code on your report'],
  'home.scan_hint': ['将二维码对准扫描器，或在此输入', 'Hold the QR code to the scanner, or type it here'],
  'home.or': ['或', 'or'],
  'home.accession': ['检查号', 'Accession number'],
  'home.birth': ['出生日期', 'Birth date'],
  'home.find': ['查找我的报告', 'Find my reports'],
  'home.wrong': ['未找到，或出生日期不正确', 'Not found, or the birth date is not right'],
  'home.wait': ['尝试次数过多，请 {s} 秒后再试', 'Too many tries: please wait {s} s'],
  'home.none': ['未找到可打印的报告', 'Nothing to print here'],
  'home.error': ['暂时无法使用，请联系工作人员', 'Not available now: please ask the staff'],
  'items.title': ['您的报告', 'Your reports'],
  'items.none': ['暂无可打印的报告', 'No reports to print yet'],
  'items.printed': ['已打印 {n} 次', 'Printed {n} times'],
  'items.report': ['打印报告', 'Print report'],
  'items.film': ['打印胶片', 'Print film'],
  'items.printing': ['正在打印…', 'Printing…'],
  'items.done': ['已发送到打印机', 'Sent to the printer'],
  'items.failed': ['打印失败，请联系工作人员', 'Printing failed: please ask the staff'],
  'finish': ['完成', 'Done'],
} as const;

export type KioskKey = keyof typeof km;

// [Chinese, English] of key, with {name} filled from params.
export function kt(key: KioskKey, params?: Record<string, string | number>): [string, string] {
  const fill = (t: string): string => (params ? t.replace(/\{(\w+)\}/g, (m, n: string) =>
    (n in params ? String(params[n]) : m)) : t);
  return [fill(km[key][0]), fill(km[key][1])];
}
